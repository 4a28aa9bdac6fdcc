// webrtcbin 1.22 receives with nicesrc ! capsfilter ! queue ! dtlssrtpdec.
// nicesrc's thread iterates a GMainContext of its own that wakes for every
// packet: 50 times a second per call, each wake a context switch and a
// main-loop iteration before any work (at 50 calls, a quarter of the
// server's CPU was the kernel, most of it these wakes).
//
// Once the call is connected (ICE and DTLS done), a ReceiveTakeover links a
// pad of its own to dtlssrtpdec in place of the queue, stops nicesrc and the
// queue (two threads fewer per call), and has libnice deliver
// the call's packets to one of a few process-wide receive threads instead
// (nice_agent_attach_recv() with that thread's GMainContext). Each receive
// thread iterates its context once per 10 ms tick: one poll serves all its
// calls, and libnice reads every readable socket (STUN included) and hands
// each packet to on_packet(), which pushes it into that call's pipeline. The
// price is at most 10 ms more inbound latency, 5 ms on average.
#include "call/shared_receive.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "thread_priority.h"
#include "ticking_thread.h"

namespace vb {
namespace {

constexpr auto kTick = std::chrono::milliseconds(10);
// Context iterations per tick: each dispatches every socket that was
// readable; more than one only catches packets that came in meanwhile.
constexpr int kMaxIterationsPerTick = 4;

// SCHED_RR one below the openairealtime pacer: above the streaming and
// network threads, so that the pacer never waits for a lock these threads
// hold while preempted (measured, 50 calls: max gap 67-74 ms at normal
// priority), and below the pacer, so that a receive tick never delays the
// outgoing audio (80 calls: max gap 73 ms at the pacer's priority, 40 ms below
// it).
void raise_priority() {
  std::string refused;
  switch (voicebridge::raise_thread_priority(voicebridge::kReceiveRealtimePriority, &refused)) {
    case voicebridge::ThreadPriority::RealtimeRoundRobin: break;
    case voicebridge::ThreadPriority::Nice: g_message("receive: threads run at nice -10 (%s)", refused.c_str()); break;
    case voicebridge::ThreadPriority::Normal:
      g_warning("receive: threads run at normal priority (%s): audio may stall under CPU contention",
                refused.c_str());
      break;
  }
}

GstElement* peer_element(GstPad* pad) {
  GstPtr<GstPad> peer(gst_pad_get_peer(pad));
  return peer ? gst_pad_get_parent_element(peer.get()) : nullptr;
}

GstPad* static_pad(GstElement* element, const char* name) { return gst_element_get_static_pad(element, name); }

// The queue between a capsfilter (fed by nicesrc) and dtlssrtpdec.
GstElement* find_receive_queue(GstElement* webrtcbin) {
  g_autoptr(GstIterator) it = gst_bin_iterate_recurse(GST_BIN(webrtcbin));
  GValue item = G_VALUE_INIT;
  GstElement* found = nullptr;
  while (!found && gst_iterator_next(it, &item) == GST_ITERATOR_OK) {
    auto* element = GST_ELEMENT(g_value_get_object(&item));
    if (made_by(element, "queue")) {
      GstPtr<GstPad> src(static_pad(element, "src"));
      GstPtr<GstPad> sink(static_pad(element, "sink"));
      GstPtr<GstElement> downstream(peer_element(src.get()));
      GstPtr<GstElement> upstream(peer_element(sink.get()));
      if (downstream && upstream && made_by(downstream.get(), "dtlssrtpdec") && made_by(upstream.get(), "capsfilter"))
        found = GST_ELEMENT(gst_object_ref(element));
    }
    g_value_reset(&item);
  }
  g_value_unset(&item);
  return found;
}

// Where a call's sockets go when it stops: a context nobody iterates (with
// no callback, a readable socket would otherwise be dispatched forever).
GMainContext* parking_context() {
  static GMainContext* const parking = g_main_context_new();
  return parking;
}

}  // namespace

// One of the process's receive threads, its GMainContext and its calls.
class ReceiveThread final : public voicebridge::TickingThread {
 public:
  explicit ReceiveThread(int index) : TickingThread(kTick), context_(g_main_context_new()) {
    start("call:receive" + std::to_string(index));
  }

  // The call is attached at the next tick.
  void add(ReceiveTakeover* call) {
    std::lock_guard lock(mutex_);
    joining_.push_back(call);
    members_changed();
  }

  // After it returns, libnice delivers nothing of the call to this thread.
  void remove(ReceiveTakeover* call) {
    std::unique_lock lock(mutex_);
    wait_for_tick_end(lock);
    const bool joining = std::erase(joining_, call) > 0;
    const bool attached = std::erase(calls_, call) > 0;
    if (attached || joining)
      call->detach(parking_context());  // no tick runs while the lock is held
  }

 private:
  void started() override {
    g_main_context_push_thread_default(context_);  // this thread owns it: callbacks run inline
    raise_priority();
  }

  size_t member_count() const override { return calls_.size() + joining_.size(); }

  void begin_tick() override {
    attaching_.swap(joining_);
    calls_.insert(calls_.end(), attaching_.begin(), attaching_.end());
  }

  void tick() override {
    for (ReceiveTakeover* call : attaching_)
      call->attach(context_);
    attaching_.clear();
    for (int i = 0; i < kMaxIterationsPerTick && g_main_context_iteration(context_, FALSE); ++i) {
    }
  }

  GMainContext* const context_;  // lives as long as the process, like the thread
  std::vector<ReceiveTakeover*> calls_;      // under mutex_
  std::vector<ReceiveTakeover*> joining_;    // under mutex_: added, attached at the next tick
  std::vector<ReceiveTakeover*> attaching_;  // this tick's joiners (the thread's own)
};

namespace {

// The process's receive threads: one per core (started on first use, never
// stopped: they sleep while they have no call).
ReceiveThread& least_loaded_thread() {
  static std::vector<ReceiveThread*>* threads = [] {
    auto* made = new std::vector<ReceiveThread*>();
    const int count = std::clamp(static_cast<int>(g_get_num_processors()), 1, 8);
    for (int i = 0; i < count; ++i)
      made->push_back(new ReceiveThread(i));
    return made;
  }();
  return **std::min_element(threads->begin(), threads->end(),
                            [](ReceiveThread* a, ReceiveThread* b) { return a->load() < b->load(); });
}

}  // namespace

std::shared_ptr<ReceiveTakeover> ReceiveTakeover::start(GstElement* webrtcbin) {
  GstPtr<GstElement> queue(find_receive_queue(webrtcbin));
  if (!queue)
    return nullptr;
  std::shared_ptr<ReceiveTakeover> takeover(new ReceiveTakeover());
  ReceiveTakeover& self = *takeover;
  GstPtr<GstPad> queue_sink(static_pad(queue.get(), "sink"));
  self.queue_src_.reset(static_pad(queue.get(), "src"));
  self.capsfilter_src_.reset(gst_pad_get_peer(queue_sink.get()));
  self.decoder_sink_.reset(gst_pad_get_peer(self.queue_src_.get()));
  if (!self.capsfilter_src_ || !self.decoder_sink_)
    return nullptr;
  self.queue_ = std::move(queue);
  GstPtr<GstElement> capsfilter(gst_pad_get_parent_element(self.capsfilter_src_.get()));
  GstPtr<GstPad> capsfilter_sink(static_pad(capsfilter.get(), "sink"));
  self.nicesrc_.reset(peer_element(capsfilter_sink.get()));
  if (!self.nicesrc_ || !made_by(self.nicesrc_.get(), "nicesrc"))
    return nullptr;
  GObject* agent = nullptr;
  g_object_get(self.nicesrc_.get(), "agent", &agent, "stream", &self.stream_id_, "component", &self.component_id_,
               nullptr);
  self.agent_.reset(agent);
  if (!agent || !NICE_IS_AGENT(agent))
    return nullptr;
  self.clock_.reset(gst_element_get_clock(webrtcbin));
  if (!self.clock_)
    return nullptr;
  self.base_time_ = gst_element_get_base_time(webrtcbin);
  self.pad_.reset(gst_pad_new("shared-receive", GST_PAD_SRC));
  gst_object_ref_sink(self.pad_.get());  // the floating reference becomes the one pad_ drops

  // Runs on nicesrc's thread: the takeover starts between two of its
  // packets. The probe stays for the pipeline's life: whatever nicesrc still
  // pushes after the takeover (also once the takeover is gone) is dropped.
  gst_pad_add_probe(
      self.capsfilter_src_.get(), GST_PAD_PROBE_TYPE_BUFFER,
      [](GstPad*, GstPadProbeInfo* info, gpointer data) {
        if (auto takeover = static_cast<std::weak_ptr<ReceiveTakeover>*>(data)->lock())
          return takeover->on_nicesrc_buffer(info);
        return GST_PAD_PROBE_DROP;
      },
      new std::weak_ptr<ReceiveTakeover>(takeover),
      [](gpointer data) { delete static_cast<std::weak_ptr<ReceiveTakeover>*>(data); });
  return takeover;
}

GstPadProbeReturn ReceiveTakeover::on_nicesrc_buffer(GstPadProbeInfo* info) {
  std::lock_guard lock(mutex_);
  if (state_ == State::Failed || (state_ == State::Stopped && !thread_))
    return GST_PAD_PROBE_OK;  // never taken over: nicesrc's path is intact
  if (state_ != State::Waiting)
    return GST_PAD_PROBE_DROP;  // read by nicesrc before it stopped: lost, like a late packet
  if (!relink()) {
    state_ = State::Failed;
    g_warning("receive: cannot take over webrtcbin's receive path: nicesrc keeps receiving");
    return GST_PAD_PROBE_OK;
  }
  // Pushed by the receive thread: pushing it from here, inside nicesrc's
  // push, corrupted buffers downstream (GStreamer CRITICALs).
  first_packet_.reset(gst_buffer_ref(GST_PAD_PROBE_INFO_BUFFER(info)));
  state_ = State::Receiving;
  thread_ = &least_loaded_thread();
  thread_->add(this);
  return GST_PAD_PROBE_DROP;
}

// queue ! dtlssrtpdec becomes (our pad) ! dtlssrtpdec, with the stream's
// sticky events (stream-start, caps, segment) carried over. capsfilter stays
// linked to the queue (the probe drops what nicesrc still pushes): an
// unlinked capsfilter without caps, as after a restart of nicesrc, fails an
// assertion and leaks the events it holds (GStreamer 1.22).
bool ReceiveTakeover::relink() {
  gst_pad_set_active(pad_.get(), TRUE);
  gst_pad_sticky_events_foreach(
      capsfilter_src_.get(),
      [](GstPad*, GstEvent** event, gpointer pad) -> gboolean {
        gst_pad_store_sticky_event(GST_PAD(pad), *event);
        return TRUE;
      },
      pad_.get());
  if (!gst_pad_unlink(queue_src_.get(), decoder_sink_.get()))
    return false;
  if (gst_pad_link(pad_.get(), decoder_sink_.get()) != GST_PAD_LINK_OK) {
    gst_pad_link(queue_src_.get(), decoder_sink_.get());
    return false;
  }
  return true;
}

// nicesrc and the queue stay locked in NULL while the pipeline's state
// changes around them; nicesrc's stop also detaches it from libnice.
void ReceiveTakeover::attach(GMainContext* context) {
  for (GstElement* element : {nicesrc_.get(), queue_.get()}) {
    gst_element_set_locked_state(element, TRUE);
    gst_element_set_state(element, GST_STATE_NULL);
  }
  push(first_packet_.release());
  nice_agent_attach_recv(NICE_AGENT(agent_.get()), stream_id_, component_id_, context, on_packet, this);
}

void ReceiveTakeover::detach(GMainContext* parking) {
  nice_agent_attach_recv(NICE_AGENT(agent_.get()), stream_id_, component_id_, parking, nullptr, nullptr);
}

// libnice's callback, on the receive thread, for each data packet (STUN is
// handled inside libnice).
void ReceiveTakeover::on_packet(NiceAgent*, guint, guint, guint length, gchar* data, gpointer self) {
  auto* takeover = static_cast<ReceiveTakeover*>(self);
  GstBuffer* packet = gst_buffer_new_memdup(data, length);
  const GstClockTime now = gst_clock_get_time(takeover->clock_.get());
  GST_BUFFER_PTS(packet) = now > takeover->base_time_ ? now - takeover->base_time_ : 0;
  takeover->push(packet);
}

void ReceiveTakeover::push(GstBuffer* packet) {
  if (push_failed_ || !packet) {
    if (packet)
      gst_buffer_unref(packet);
    return;
  }
  const GstFlowReturn flow = gst_pad_push(pad_.get(), packet);
  if (flow != GST_FLOW_OK && flow != GST_FLOW_FLUSHING) {  // flushing: the pipeline is stopping
    push_failed_ = true;
    g_warning("receive: the call's pipeline refused a packet (%s): no more are pushed", gst_flow_get_name(flow));
  }
}

void ReceiveTakeover::stop() {
  std::lock_guard lock(mutex_);
  if (state_ == State::Receiving)
    thread_->remove(this);
  state_ = State::Stopped;
}

ReceiveTakeover::~ReceiveTakeover() {
  if (!pad_)
    return;
  if (GstPtr<GstPad> peer{gst_pad_get_peer(pad_.get())})
    gst_pad_unlink(pad_.get(), peer.get());
  gst_pad_set_active(pad_.get(), FALSE);
}

}  // namespace vb
