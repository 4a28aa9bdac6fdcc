/**
 * SECTION:element-openairealtime
 *
 * Sends the caller's audio (sink, 24 kHz mono S16LE) to the OpenAI Realtime
 * API over a WebSocket and outputs the AI's speech (src, same caps) as a live
 * stream: one 20 ms buffer per period on the pipeline clock, silence flagged
 * GAP while the AI is quiet. Handles server VAD barge-in (flush and
 * conversation.item.truncate), function calls, reconnection with history
 * replay and proactive session rotation.
 *
 * All network work runs on one process-wide thread ("openairealtime") shared
 * by every instance; the function-call signal and the bus messages come from
 * that thread.
 *
 * Example: gst-launch-1.0 autoaudiosrc ! audioconvert ! audioresample !
 *   audio/x-raw,rate=24000,channels=1,format=S16LE ! openairealtime api-key=$OPENAI_API_KEY !
 *   audioconvert ! autoaudiosink
 */
#include "gstopenairealtime.h"

#include <gst/audio/audio.h>

#include <memory>
#include <condition_variable>
#include <mutex>

#include "input_queue.h"
#include "playout_queue.h"
#include "realtime_connection.h"
#include "realtime_session.h"
#include "shared_pacer.h"

GST_DEBUG_CATEGORY(openairealtime_debug);
#define GST_CAT_DEFAULT openairealtime_debug

namespace openairealtime {
namespace {

constexpr guint kRate = 24000;
constexpr guint kBytesPerMs = kRate * 2 / 1000;
constexpr GstClockTime kFrameDuration = 20 * GST_MSECOND;
constexpr gsize kFrameBytes = 20 * kBytesPerMs;
constexpr gsize kMaxPlayoutBytes = 5 * 60 * 1000 * kBytesPerMs;  // 5 min of speech
// Behind the clock by more than this (after a pause), output jumps ahead.
constexpr GstClockTime kResyncThreshold = 200 * GST_MSECOND;
constexpr guint kDropLogEveryMs = 1000;

const guint8 kSilence[kFrameBytes] = {};

enum Property {
  PROP_0,
  PROP_URL,
  PROP_API_KEY,
  PROP_MODEL,
  PROP_AZURE,
  PROP_VOICE,
  PROP_INSTRUCTIONS,
  PROP_TOOLS,
  PROP_TURN_DETECTION,
  PROP_VAD_THRESHOLD,
  PROP_VAD_PREFIX_PADDING_MS,
  PROP_VAD_SILENCE_DURATION_MS,
  PROP_VAD_EAGERNESS,
  PROP_VAD_IDLE_TIMEOUT_MS,
  PROP_INPUT_TRANSCRIPTION_MODEL,
  PROP_INPUT_TRANSCRIPTION_LANGUAGE,
  PROP_NOISE_REDUCTION,
  PROP_INPUT_CHUNK_MS,
  PROP_MAX_INPUT_QUEUE_MS,
  PROP_SESSION_MAX_DURATION,
  PROP_RECONNECT_MAX_ATTEMPTS,
  PROP_CONNECT_TIMEOUT_MS,
  PROP_EOS_LINGER_MS,
  PROP_SHARED_PACING,
  PROP_DROPPED_INPUT_MS,
  PROP_SENT_INPUT_MS,
  PROP_RECEIVED_MS,
  PROP_PLAYED_MS,
  PROP_BARGE_INS,
  PROP_RECONNECTS,
};

enum Signal { SIGNAL_FUNCTION_CALL, SIGNAL_FUNCTION_RESULT, SIGNAL_CREATE_RESPONSE, N_SIGNALS };
guint signals[N_SIGNALS];

constexpr guint kDefaultMaxInputQueueMs = 2000;
constexpr guint kDefaultEosLingerMs = 1000;

struct MemoryUnref {
  void operator()(GstMemory* memory) const { gst_memory_unref(memory); }
};
struct ClockUnref {
  void operator()(GstClock* clock) const { gst_object_unref(clock); }
};

}  // namespace

// The C++ side of one element: the queues shared by the streaming threads and
// the network thread, the paced output task and the session delegate.
class RealtimeElement final : public SessionDelegate, public PacedOutput {
 public:
  explicit RealtimeElement(GstOpenAIRealtime* element)
      : element_(element),
        silence_(gst_memory_new_wrapped(GST_MEMORY_FLAG_READONLY, const_cast<guint8*>(kSilence), kFrameBytes, 0,
                                        kFrameBytes, nullptr, nullptr)),
        playout_(kMaxPlayoutBytes) {}

  // Settings, guarded by the object lock.
  SessionSettings settings;
  guint max_input_queue_ms = kDefaultMaxInputQueueMs;
  guint eos_linger_ms = kDefaultEosLingerMs;
  bool shared_pacing = false;

  bool start_session();
  void stop_session();
  void acquire_network() { network_ = NetworkThread::acquire(); }
  void release_network() { network_.reset(); }

  GstFlowReturn chain(GstBuffer* buffer);
  void sink_eos();
  void sink_flush();
  void start_output();
  void pause_output();
  void stop_output();
  void loop();
  void pace() override;

  bool function_result(const char* call_id, const char* output);
  bool create_response(const char* instructions);
  guint64 stat(guint property);

  // SessionDelegate, on the network thread.
  void session_state(const char* state, const std::string& session_id, guint attempt) override;
  gsize take_input(guint8* dest, gsize max, bool allow_partial) override;
  bool input_finished() override;
  void play_delta(const std::string& item_id, const char* base64) override;
  bool playout_busy() override;
  std::optional<PlayoutCut> flush_playout() override;
  void barge_in(const PlayoutCut& cut) override;
  void transcript(const char* role, const std::string& item_id, const std::string& text) override;
  void usage(const Usage& usage) override;
  void function_call(const std::string& call_id, const std::string& name, const std::string& arguments) override;
  void response_activity(bool active) override;
  void warning(const ServerError& error) override;
  void fatal(const ServerError& error) override;

 private:
  void post(GstStructure* structure) {
    gst_element_post_message(GST_ELEMENT(element_), gst_message_new_element(GST_OBJECT(element_), structure));
  }
  void send_stream_start();
  bool wait_playing();
  bool wait_until(GstClockTime running_time);
  GstClockTime running_time_now();
  GstBuffer* next_frame(bool& end_of_stream);
  GstBuffer* silence_frame();
  void schedule_first_frame(GstClockTime now);
  bool push_next_frame();

  GstOpenAIRealtime* element_;
  std::shared_ptr<NetworkThread> network_;
  std::unique_ptr<GstMemory, MemoryUnref> silence_;

  std::mutex mutex_;  // guards everything below
  std::unique_ptr<Session> session_;
  InputQueue input_;
  gsize input_chunk_bytes_ = 0;
  bool input_eos_ = false;
  PlayoutQueue playout_;
  bool response_active_ = false;
  guint idle_ms_after_eos_ = 0;
  guint eos_linger_ms_ = kDefaultEosLingerMs;
  GstClockID clock_wait_ = nullptr;
  // PLAYING: frames flow. Flushing: the src pad is deactivated, the task stops.
  bool playing_ = false;
  bool flushing_ = false;
  std::condition_variable output_state_changed_;
  guint64 dropped_input_bytes_ = 0, logged_dropped_bytes_ = 0, sent_input_bytes_ = 0;
  guint64 received_bytes_ = 0, played_bytes_ = 0;
  guint barge_ins_ = 0, reconnects_ = 0;

  // Which of pad task or shared pacer pushes the output: fixed at PAUSED -> PLAYING.
  bool paced_by_pacer_ = false;

  // Output state (the task's or, with shared pacing, the pacer's thread only).
  bool stream_started_ = false;
  bool output_ended_ = false;  // EOS or a flow error: nothing more is pushed
  GstClockTime next_pts_ = GST_CLOCK_TIME_NONE;
  bool discont_ = true;
  bool not_linked_logged_ = false;
};

}  // namespace openairealtime

using openairealtime::RealtimeElement;

struct _GstOpenAIRealtime {
  GstElement parent;
  GstPad* sinkpad;
  GstPad* srcpad;
  RealtimeElement* impl;  // created in init, deleted in finalize
};

#define AUDIO_CAPS "audio/x-raw,format=S16LE,rate=24000,channels=1,layout=interleaved"
static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(AUDIO_CAPS));
static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(AUDIO_CAPS));

G_DEFINE_TYPE_WITH_CODE(GstOpenAIRealtime, gst_openai_realtime, GST_TYPE_ELEMENT,
                        GST_DEBUG_CATEGORY_INIT(openairealtime_debug, "openairealtime", 0,
                                                "OpenAI Realtime bridge"));
GST_ELEMENT_REGISTER_DEFINE(openairealtime, "openairealtime", GST_RANK_NONE, GST_TYPE_OPENAI_REALTIME);

GType gst_openai_realtime_turn_detection_get_type(void) {
  static GType type = 0;
  static const GEnumValue values[] = {
      {static_cast<gint>(openairealtime::TurnDetection::ServerVad), "Server VAD (silence based)", "server-vad"},
      {static_cast<gint>(openairealtime::TurnDetection::SemanticVad), "Semantic VAD (end-of-utterance model)",
       "semantic-vad"},
      {static_cast<gint>(openairealtime::TurnDetection::None), "None (manual turns)", "none"},
      {0, nullptr, nullptr}};
  if (g_once_init_enter(&type)) g_once_init_leave(&type, g_enum_register_static("GstOpenAIRealtimeTurnDetection", values));
  return type;
}

GType gst_openai_realtime_eagerness_get_type(void) {
  static GType type = 0;
  static const GEnumValue values[] = {
      {static_cast<gint>(openairealtime::Eagerness::Low), "Low (waits longest)", "low"},
      {static_cast<gint>(openairealtime::Eagerness::Medium), "Medium", "medium"},
      {static_cast<gint>(openairealtime::Eagerness::High), "High (answers soonest)", "high"},
      {static_cast<gint>(openairealtime::Eagerness::Auto), "Auto (server default, medium)", "auto"},
      {0, nullptr, nullptr}};
  if (g_once_init_enter(&type)) g_once_init_leave(&type, g_enum_register_static("GstOpenAIRealtimeEagerness", values));
  return type;
}

GType gst_openai_realtime_noise_reduction_get_type(void) {
  static GType type = 0;
  static const GEnumValue values[] = {
      {static_cast<gint>(openairealtime::NoiseReduction::None), "None", "none"},
      {static_cast<gint>(openairealtime::NoiseReduction::NearField), "Near field (headset, handset)", "near-field"},
      {static_cast<gint>(openairealtime::NoiseReduction::FarField), "Far field (speakerphone, room)", "far-field"},
      {0, nullptr, nullptr}};
  if (g_once_init_enter(&type))
    g_once_init_leave(&type, g_enum_register_static("GstOpenAIRealtimeNoiseReduction", values));
  return type;
}

namespace openairealtime {

// --- session ------------------------------------------------------------------

bool RealtimeElement::start_session() {
  SessionSettings snapshot;
  guint queue_ms;
  GST_OBJECT_LOCK(element_);
  snapshot = settings;
  queue_ms = max_input_queue_ms;
  const guint linger_ms = eos_linger_ms;
  GST_OBJECT_UNLOCK(element_);

  std::string error;
  if (!build_connect_url(snapshot.config, error)) {
    GST_ELEMENT_ERROR(element_, RESOURCE, SETTINGS, ("Invalid Realtime URL: %s", error.c_str()),
                      ("url=%s", snapshot.config.url.c_str()));
    return false;
  }
  if (snapshot.config.api_key.empty()) GST_WARNING_OBJECT(element_, "no api-key set: connecting without credentials");
  {
    std::lock_guard lock(mutex_);
    input_.reset(queue_ms * kBytesPerMs);
    input_chunk_bytes_ = snapshot.input_chunk_ms * kBytesPerMs;
    input_eos_ = false;
    playout_.flush();
    response_active_ = false;
    idle_ms_after_eos_ = 0;
    eos_linger_ms_ = linger_ms;
    dropped_input_bytes_ = logged_dropped_bytes_ = sent_input_bytes_ = 0;
    received_bytes_ = played_bytes_ = 0;
    barge_ins_ = reconnects_ = 0;
  }
  // The output task is stopped below PAUSED: a new run starts a new stream.
  stream_started_ = false;
  output_ended_ = false;
  next_pts_ = GST_CLOCK_TIME_NONE;
  discont_ = true;
  not_linked_logged_ = false;
  std::unique_ptr<Session> session;
  network_->run_sync([&] {
    session = std::make_unique<Session>(network_->context(), std::move(snapshot), *this, GST_OBJECT(element_));
  });
  std::lock_guard lock(mutex_);
  session_ = std::move(session);
  return true;
}

void RealtimeElement::stop_session() {
  std::unique_ptr<Session> session;
  {
    std::lock_guard lock(mutex_);
    session = std::move(session_);
  }
  // Destroyed on the network thread, without our lock: it calls back into us.
  if (session) network_->run_sync([&] { session.reset(); });
}

bool RealtimeElement::function_result(const char* call_id, const char* output) {
  if (!call_id || !*call_id || !output) {
    GST_WARNING_OBJECT(element_, "function-result needs a call_id and an output");
    return false;
  }
  g_autoptr(JsonParser) parser = json_parser_new();
  g_autoptr(GError) error = nullptr;
  if (!json_parser_load_from_data(parser, output, -1, &error)) {
    GST_WARNING_OBJECT(element_, "function-result for %s: output is not JSON (%s)", call_id, error->message);
    return false;
  }
  std::lock_guard lock(mutex_);
  if (!session_ || !session_->post_function_result(call_id, output)) {
    GST_WARNING_OBJECT(element_, "function-result for %s: no such function call is awaiting its output", call_id);
    return false;
  }
  return true;
}

bool RealtimeElement::create_response(const char* instructions) {
  std::lock_guard lock(mutex_);
  if (!session_) {
    GST_WARNING_OBJECT(element_, "create-response: the element is not running (state below PAUSED)");
    return false;
  }
  session_->post_create_response(instructions ? instructions : "");
  return true;
}

guint64 RealtimeElement::stat(guint property) {
  std::lock_guard lock(mutex_);
  switch (property) {
    case PROP_DROPPED_INPUT_MS: return dropped_input_bytes_ / kBytesPerMs;
    case PROP_SENT_INPUT_MS: return sent_input_bytes_ / kBytesPerMs;
    case PROP_RECEIVED_MS: return received_bytes_ / kBytesPerMs;
    case PROP_PLAYED_MS: return played_bytes_ / kBytesPerMs;
    case PROP_BARGE_INS: return barge_ins_;
    case PROP_RECONNECTS: return reconnects_;
    default: return 0;
  }
}

// --- input (streaming thread of the sink pad) -------------------------------------

GstFlowReturn RealtimeElement::chain(GstBuffer* buffer) {
  g_autoptr(GstBuffer) owned = buffer;
  GstMapInfo map;
  if (!gst_buffer_map(owned, &map, GST_MAP_READ)) {
    GST_ELEMENT_ERROR(element_, STREAM, FAILED, ("Could not read an input buffer"), (nullptr));
    return GST_FLOW_ERROR;
  }
  gsize dropped;
  guint64 total_dropped = 0;
  bool log_drop = false;
  {
    std::lock_guard lock(mutex_);
    if (input_eos_) {
      gst_buffer_unmap(owned, &map);
      return GST_FLOW_EOS;
    }
    dropped = input_.push(map.data, map.size);
    if (dropped > 0) {
      dropped_input_bytes_ += dropped;
      total_dropped = dropped_input_bytes_;
      log_drop = logged_dropped_bytes_ == 0 || total_dropped - logged_dropped_bytes_ >= kDropLogEveryMs * kBytesPerMs;
      if (log_drop) logged_dropped_bytes_ = total_dropped;
    }
    if (session_ && input_.size() >= input_chunk_bytes_) session_->input_queued();
  }
  gst_buffer_unmap(owned, &map);
  if (log_drop)
    GST_WARNING_OBJECT(element_,
                       "input queue full (the Realtime session is not taking audio): dropped the oldest %" G_GSIZE_FORMAT
                       " bytes, %" G_GUINT64_FORMAT " ms dropped so far",
                       dropped, total_dropped / kBytesPerMs);
  return GST_FLOW_OK;
}

void RealtimeElement::sink_eos() {
  std::lock_guard lock(mutex_);
  GST_INFO_OBJECT(element_, "input ended; playing out what the AI still says, then EOS");
  input_eos_ = true;
  idle_ms_after_eos_ = 0;
  if (session_) session_->wake();  // sends the last partial chunk
}

void RealtimeElement::sink_flush() {
  std::lock_guard lock(mutex_);
  input_.clear();
  input_eos_ = false;
}

gsize RealtimeElement::take_input(guint8* dest, gsize max, bool allow_partial) {
  std::lock_guard lock(mutex_);
  if (!allow_partial && input_.size() < max) return 0;
  const gsize taken = input_.pop(dest, max);
  sent_input_bytes_ += taken;
  return taken;
}

bool RealtimeElement::input_finished() {
  std::lock_guard lock(mutex_);
  return input_eos_;
}

// --- output (network thread in, src task out) -------------------------------------

void RealtimeElement::play_delta(const std::string& item_id, const char* base64) {
  const gsize encoded = strlen(base64);
  GstBuffer* pcm = gst_buffer_new_allocate(nullptr, encoded / 4 * 3 + 3, nullptr);
  GstMapInfo map;
  gst_buffer_map(pcm, &map, GST_MAP_WRITE);
  gint state = 0;
  guint save = 0;
  const gsize decoded = g_base64_decode_step(base64, encoded, map.data, &state, &save);
  gst_buffer_unmap(pcm, &map);
  if (decoded == 0) {
    GST_WARNING_OBJECT(element_, "ignoring an empty or undecodable audio delta of item %s", item_id.c_str());
    gst_buffer_unref(pcm);
    return;
  }
  gst_buffer_set_size(pcm, decoded);
  std::lock_guard lock(mutex_);
  received_bytes_ += decoded;
  if (!playout_.push(item_id, pcm))
    GST_WARNING_OBJECT(element_, "playout queue full (%" G_GSIZE_FORMAT " ms): dropped a delta of item %s",
                       playout_.queued_bytes() / kBytesPerMs, item_id.c_str());
}

bool RealtimeElement::playout_busy() {
  std::lock_guard lock(mutex_);
  return playout_.queued_bytes() > 0;
}

std::optional<PlayoutCut> RealtimeElement::flush_playout() {
  std::lock_guard lock(mutex_);
  std::optional<PlayoutQueue::Cut> cut = playout_.flush();
  if (!cut) return std::nullopt;
  return PlayoutCut{cut->item_id, cut->played_bytes / kBytesPerMs, cut->received_bytes / kBytesPerMs};
}

void RealtimeElement::response_activity(bool active) {
  std::lock_guard lock(mutex_);
  response_active_ = active;
}

GstClockTime RealtimeElement::running_time_now() {
  std::unique_ptr<GstClock, ClockUnref> clock(gst_element_get_clock(GST_ELEMENT(element_)));
  if (!clock) clock.reset(gst_system_clock_obtain());
  return gst_clock_get_time(clock.get()) - gst_element_get_base_time(GST_ELEMENT(element_));
}

bool RealtimeElement::wait_until(GstClockTime running_time) {
  std::unique_ptr<GstClock, ClockUnref> clock(gst_element_get_clock(GST_ELEMENT(element_)));
  if (!clock) clock.reset(gst_system_clock_obtain());
  GstClockID id = gst_clock_new_single_shot_id(clock.get(), gst_element_get_base_time(GST_ELEMENT(element_)) + running_time);
  {
    std::lock_guard lock(mutex_);
    if (!playing_ || flushing_) {
      gst_clock_id_unref(id);
      return false;
    }
    clock_wait_ = id;
  }
  const GstClockReturn result = gst_clock_id_wait(id, nullptr);
  {
    std::lock_guard lock(mutex_);
    clock_wait_ = nullptr;
  }
  gst_clock_id_unref(id);
  return result != GST_CLOCK_UNSCHEDULED;
}

// PAUSED -> PLAYING.
void RealtimeElement::start_output() {
  {
    std::lock_guard lock(mutex_);
    playing_ = true;
    flushing_ = false;
  }
  output_state_changed_.notify_all();
  GST_OBJECT_LOCK(element_);
  paced_by_pacer_ = shared_pacing;
  GST_OBJECT_UNLOCK(element_);
  if (paced_by_pacer_) {
    SharedPacer::instance().add(this);
    return;
  }
  gst_pad_start_task(element_->srcpad, [](gpointer self) { static_cast<RealtimeElement*>(self)->loop(); }, this,
                     nullptr);
}

// PLAYING -> PAUSED: the task leaves its clock wait and waits for PLAYING. It
// is not paused from here: it may be blocked pushing into a sink that waits
// for preroll, and that would deadlock.
void RealtimeElement::pause_output() {
  {
    std::lock_guard lock(mutex_);
    playing_ = false;
    if (clock_wait_) gst_clock_id_unschedule(clock_wait_);
  }
  if (paced_by_pacer_) SharedPacer::instance().remove(this);
}

// Deactivation: the task ends (downstream is flushing, so no push blocks).
void RealtimeElement::stop_output() {
  {
    std::lock_guard lock(mutex_);
    playing_ = false;
    flushing_ = true;
    if (clock_wait_) gst_clock_id_unschedule(clock_wait_);
  }
  output_state_changed_.notify_all();
  if (paced_by_pacer_) SharedPacer::instance().remove(this);
  gst_pad_stop_task(element_->srcpad);
}

bool RealtimeElement::wait_playing() {
  std::unique_lock lock(mutex_);
  output_state_changed_.wait(lock, [this] { return playing_ || flushing_; });
  return !flushing_;
}

void RealtimeElement::send_stream_start() {
  GstPad* pad = element_->srcpad;
  g_autofree gchar* stream_id = gst_pad_create_stream_id(pad, GST_ELEMENT(element_), nullptr);
  gst_pad_push_event(pad, gst_event_new_stream_start(stream_id));
  g_autoptr(GstCaps) caps = gst_pad_get_pad_template_caps(pad);
  gst_pad_push_event(pad, gst_event_new_caps(caps));
  GstSegment segment;
  gst_segment_init(&segment, GST_FORMAT_TIME);
  gst_pad_push_event(pad, gst_event_new_segment(&segment));
  stream_started_ = true;
}

GstBuffer* RealtimeElement::silence_frame() {
  GstBuffer* frame = gst_buffer_new();
  gst_buffer_append_memory(frame, gst_memory_ref(silence_.get()));
  GST_BUFFER_FLAG_SET(frame, GST_BUFFER_FLAG_GAP);
  return frame;
}

GstBuffer* RealtimeElement::next_frame(bool& end_of_stream) {
  std::lock_guard lock(mutex_);
  const gsize queued = playout_.queued_bytes();
  // A short tail is played only once the response is complete: more may follow.
  if (queued >= kFrameBytes || (queued > 0 && !response_active_)) {
    GstBuffer* frame = playout_.take(kFrameBytes);
    const gsize size = gst_buffer_get_size(frame);
    played_bytes_ += size;
    idle_ms_after_eos_ = 0;
    if (size < kFrameBytes) {
      GstBuffer* padded = gst_buffer_new_allocate(nullptr, kFrameBytes, nullptr);
      GstMapInfo map;
      gst_buffer_map(padded, &map, GST_MAP_WRITE);
      gst_buffer_extract(frame, 0, map.data, size);
      memset(map.data + size, 0, kFrameBytes - size);
      gst_buffer_unmap(padded, &map);
      gst_buffer_unref(frame);
      return padded;
    }
    return gst_buffer_make_writable(frame);
  }
  if (input_eos_) {
    idle_ms_after_eos_ = response_active_ ? 0 : idle_ms_after_eos_ + kFrameDuration / GST_MSECOND;
    if (idle_ms_after_eos_ >= eos_linger_ms_) {
      end_of_stream = true;
      return nullptr;
    }
  }
  return silence_frame();
}

void RealtimeElement::schedule_first_frame(GstClockTime now) {
  if (!GST_CLOCK_TIME_IS_VALID(next_pts_)) {
    next_pts_ = now;  // first frame: the running time at which playback starts
    GST_INFO_OBJECT(element_, "output starts at running time %" GST_TIME_FORMAT, GST_TIME_ARGS(next_pts_));
  } else if (now > next_pts_ + kResyncThreshold) {
    GST_INFO_OBJECT(element_, "output %" GST_TIME_FORMAT " behind the clock (paused?): jumping to %" GST_TIME_FORMAT,
                    GST_TIME_ARGS(now - next_pts_), GST_TIME_ARGS(now));
    next_pts_ = now;
    discont_ = true;
  }
}

void RealtimeElement::loop() {
  GstPad* pad = element_->srcpad;
  if (!wait_playing()) {
    gst_pad_pause_task(pad);
    return;
  }
  if (!stream_started_) send_stream_start();
  schedule_first_frame(running_time_now());
  if (!wait_until(next_pts_)) {
    GST_DEBUG_OBJECT(element_, "clock wait interrupted (paused or stopping)");
    return;
  }
  if (!push_next_frame()) gst_pad_pause_task(pad);
}

// Shared pacing: called every half frame period; pushes each frame whose PTS
// is within a quarter period of now (the pacer's ticks keep that phase).
void RealtimeElement::pace() {
  {
    std::lock_guard lock(mutex_);
    if (!playing_ || flushing_ || output_ended_) return;
  }
  if (!stream_started_) send_stream_start();
  const GstClockTime now = running_time_now();
  schedule_first_frame(now);
  while (!output_ended_ && next_pts_ <= now + kFrameDuration / 4) output_ended_ = !push_next_frame();
}

// Pushes the frame due at next_pts_; false when output must stop (EOS or a
// flow error, already handled).
bool RealtimeElement::push_next_frame() {
  GstPad* pad = element_->srcpad;
  bool end_of_stream = false;
  GstBuffer* frame = next_frame(end_of_stream);
  if (end_of_stream) {
    GST_INFO_OBJECT(element_, "input ended and nothing left to play: EOS");
    gst_pad_push_event(pad, gst_event_new_eos());
    return false;
  }
  GST_BUFFER_PTS(frame) = next_pts_;
  GST_BUFFER_DURATION(frame) = kFrameDuration;
  if (discont_) {
    GST_BUFFER_FLAG_SET(frame, GST_BUFFER_FLAG_DISCONT);
    discont_ = false;
  }
  next_pts_ += kFrameDuration;
  const GstFlowReturn result = gst_pad_push(pad, frame);
  if (result == GST_FLOW_OK) return true;
  if (result == GST_FLOW_NOT_LINKED) {
    // Allowed: the app may link the output later (e.g. once a call is accepted).
    if (!not_linked_logged_) GST_DEBUG_OBJECT(element_, "src not linked: dropping output until it is");
    not_linked_logged_ = true;
    return true;
  }
  GST_DEBUG_OBJECT(element_, "stopping output: %s", gst_flow_get_name(result));
  if (result == GST_FLOW_EOS || result < GST_FLOW_EOS) {
    if (result != GST_FLOW_EOS) GST_ELEMENT_FLOW_ERROR(element_, result);
    gst_pad_push_event(pad, gst_event_new_eos());
  }
  return false;
}

// --- session events (network thread) -------------------------------------------

void RealtimeElement::session_state(const char* state, const std::string& session_id, guint attempt) {
  if (g_str_equal(state, "reconnecting")) {
    std::lock_guard lock(mutex_);
    ++reconnects_;
  }
  GstStructure* structure =
      gst_structure_new("openairealtime-session", "state", G_TYPE_STRING, state, "attempt", G_TYPE_UINT, attempt, nullptr);
  if (!session_id.empty()) gst_structure_set(structure, "session-id", G_TYPE_STRING, session_id.c_str(), nullptr);
  post(structure);
}

void RealtimeElement::barge_in(const PlayoutCut& cut) {
  {
    std::lock_guard lock(mutex_);
    ++barge_ins_;
  }
  post(gst_structure_new("openairealtime-barge-in", "item-id", G_TYPE_STRING, cut.item_id.c_str(), "audio-end-ms",
                         G_TYPE_UINT64, cut.played_ms, "received-ms", G_TYPE_UINT64, cut.received_ms, nullptr));
}

void RealtimeElement::transcript(const char* role, const std::string& item_id, const std::string& text) {
  GST_INFO_OBJECT(element_, "%s transcript (%s): %s", role, item_id.c_str(), text.c_str());
  post(gst_structure_new("openairealtime-transcript", "role", G_TYPE_STRING, role, "item-id", G_TYPE_STRING,
                         item_id.c_str(), "text", G_TYPE_STRING, text.c_str(), nullptr));
}

void RealtimeElement::usage(const Usage& usage) {
  post(gst_structure_new("openairealtime-usage", "response-id", G_TYPE_STRING, usage.response_id.c_str(), "status",
                         G_TYPE_STRING, usage.status.c_str(), "input-tokens", G_TYPE_INT,
                         static_cast<gint>(usage.input_tokens), "output-tokens", G_TYPE_INT,
                         static_cast<gint>(usage.output_tokens), "total-tokens", G_TYPE_INT,
                         static_cast<gint>(usage.total_tokens), nullptr));
}

void RealtimeElement::function_call(const std::string& call_id, const std::string& name, const std::string& arguments) {
  g_signal_emit(element_, signals[SIGNAL_FUNCTION_CALL], 0, call_id.c_str(), name.c_str(), arguments.c_str());
}

static GstStructure* error_details(const ServerError& error) {
  return gst_structure_new("openairealtime-error", "type", G_TYPE_STRING, error.type.c_str(), "code", G_TYPE_STRING,
                           error.code.c_str(), "message", G_TYPE_STRING, error.message.c_str(), nullptr);
}

void RealtimeElement::warning(const ServerError& error) {
  gst_element_message_full_with_details(
      GST_ELEMENT(element_), GST_MESSAGE_WARNING, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_FAILED,
      g_strdup_printf("Realtime API error %s: %s", error.code.c_str(), error.message.c_str()),
      g_strdup_printf("type=%s code=%s", error.type.c_str(), error.code.c_str()), __FILE__, GST_FUNCTION, __LINE__,
      error_details(error));
}

void RealtimeElement::fatal(const ServerError& error) {
  const gint code = error.type == "authentication_error" ? GST_RESOURCE_ERROR_NOT_AUTHORIZED
                                                          : GST_RESOURCE_ERROR_OPEN_READ_WRITE;
  gst_element_message_full_with_details(
      GST_ELEMENT(element_), GST_MESSAGE_ERROR, GST_RESOURCE_ERROR, code,
      g_strdup_printf("Realtime session failed: %s", error.message.c_str()),
      g_strdup_printf("type=%s code=%s", error.type.c_str(), error.code.c_str()), __FILE__, GST_FUNCTION, __LINE__,
      error_details(error));
}

}  // namespace openairealtime

// --- GObject / GstElement glue --------------------------------------------------------

static RealtimeElement* impl_of(gpointer object) { return GST_OPENAI_REALTIME(object)->impl; }

static GstFlowReturn sink_chain(GstPad*, GstObject* parent, GstBuffer* buffer) {
  return impl_of(parent)->chain(buffer);
}

static gboolean sink_event(GstPad* pad, GstObject* parent, GstEvent* event) {
  // The output is a timeline of its own: nothing from upstream is forwarded.
  switch (GST_EVENT_TYPE(event)) {
    case GST_EVENT_EOS:
      impl_of(parent)->sink_eos();
      break;
    case GST_EVENT_FLUSH_STOP:
      impl_of(parent)->sink_flush();
      break;
    case GST_EVENT_CAPS:
      break;  // the template is fixed: accept-caps already checked it
    default:
      break;
  }
  GST_LOG_OBJECT(pad, "consumed %" GST_PTR_FORMAT, event);
  gst_event_unref(event);
  return TRUE;
}

static gboolean sink_query(GstPad* pad, GstObject* parent, GstQuery* query) {
  switch (GST_QUERY_TYPE(query)) {
    case GST_QUERY_CAPS:
    case GST_QUERY_ACCEPT_CAPS:
      return gst_pad_query_default(pad, parent, query);
    default:
      return FALSE;  // upstream must not see (or wait for) our downstream
  }
}

static gboolean src_query(GstPad* pad, GstObject* parent, GstQuery* query) {
  switch (GST_QUERY_TYPE(query)) {
    case GST_QUERY_LATENCY:
      gst_query_set_latency(query, TRUE, openairealtime::kFrameDuration, openairealtime::kFrameDuration);
      return TRUE;
    case GST_QUERY_CAPS:
    case GST_QUERY_ACCEPT_CAPS:
      return gst_pad_query_default(pad, parent, query);
    default:
      return FALSE;
  }
}

static gboolean src_activate_mode(GstPad*, GstObject* parent, GstPadMode mode, gboolean active) {
  if (mode != GST_PAD_MODE_PUSH) return FALSE;
  if (!active) impl_of(parent)->stop_output();
  return TRUE;
}

static GstStateChangeReturn change_state(GstElement* element, GstStateChange transition) {
  RealtimeElement* impl = impl_of(element);
  switch (transition) {
    case GST_STATE_CHANGE_NULL_TO_READY:
      impl->acquire_network();
      break;
    case GST_STATE_CHANGE_READY_TO_PAUSED:
      if (!impl->start_session()) return GST_STATE_CHANGE_FAILURE;
      break;
    case GST_STATE_CHANGE_PLAYING_TO_PAUSED:
      impl->pause_output();
      break;
    default:
      break;
  }
  GstStateChangeReturn result = GST_ELEMENT_CLASS(gst_openai_realtime_parent_class)->change_state(element, transition);
  if (result == GST_STATE_CHANGE_FAILURE) {
    if (transition == GST_STATE_CHANGE_READY_TO_PAUSED) impl->stop_session();
    return result;
  }
  switch (transition) {
    case GST_STATE_CHANGE_READY_TO_PAUSED:
    case GST_STATE_CHANGE_PLAYING_TO_PAUSED:
      result = GST_STATE_CHANGE_NO_PREROLL;  // live: output exists only in PLAYING
      break;
    case GST_STATE_CHANGE_PAUSED_TO_PLAYING:
      impl->start_output();
      break;
    case GST_STATE_CHANGE_PAUSED_TO_READY:
      impl->stop_session();
      break;
    case GST_STATE_CHANGE_READY_TO_NULL:
      impl->release_network();
      break;
    default:
      break;
  }
  return result;
}

static gboolean function_result_action(GstOpenAIRealtime* self, const gchar* call_id, const gchar* output) {
  return self->impl->function_result(call_id, output);
}

static gboolean create_response_action(GstOpenAIRealtime* self, const gchar* instructions) {
  return self->impl->create_response(instructions);
}

static void set_string(std::string& target, const GValue* value) {
  const gchar* text = g_value_get_string(value);
  target = text ? text : "";
}

static void set_property(GObject* object, guint id, const GValue* value, GParamSpec* pspec) {
  GstOpenAIRealtime* self = GST_OPENAI_REALTIME(object);
  RealtimeElement* impl = self->impl;
  openairealtime::SessionSettings& settings = impl->settings;
  openairealtime::SessionConfig& config = settings.config;
  if (id == openairealtime::PROP_TOOLS) {
    const gchar* text = g_value_get_string(value);
    std::string error;
    if (!openairealtime::validate_tools_json(text ? text : "", error)) {
      GST_ELEMENT_WARNING(self, RESOURCE, SETTINGS, ("Invalid tools JSON, keeping the previous tools: %s", error.c_str()),
                          (nullptr));
      return;
    }
  }
  GST_OBJECT_LOCK(self);
  switch (id) {
    case openairealtime::PROP_URL: set_string(config.url, value); break;
    case openairealtime::PROP_API_KEY: set_string(config.api_key, value); break;
    case openairealtime::PROP_MODEL: set_string(config.model, value); break;
    case openairealtime::PROP_AZURE: config.azure = g_value_get_boolean(value); break;
    case openairealtime::PROP_VOICE: set_string(config.voice, value); break;
    case openairealtime::PROP_INSTRUCTIONS: set_string(config.instructions, value); break;
    case openairealtime::PROP_TOOLS: set_string(config.tools_json, value); break;
    case openairealtime::PROP_TURN_DETECTION:
      config.turn_detection = static_cast<openairealtime::TurnDetection>(g_value_get_enum(value));
      break;
    case openairealtime::PROP_VAD_THRESHOLD: config.vad_threshold = g_value_get_double(value); break;
    case openairealtime::PROP_VAD_PREFIX_PADDING_MS: config.vad_prefix_padding_ms = g_value_get_uint(value); break;
    case openairealtime::PROP_VAD_SILENCE_DURATION_MS: config.vad_silence_duration_ms = g_value_get_uint(value); break;
    case openairealtime::PROP_VAD_EAGERNESS:
      config.vad_eagerness = static_cast<openairealtime::Eagerness>(g_value_get_enum(value));
      break;
    case openairealtime::PROP_VAD_IDLE_TIMEOUT_MS: config.vad_idle_timeout_ms = g_value_get_uint(value); break;
    case openairealtime::PROP_INPUT_TRANSCRIPTION_MODEL: set_string(config.input_transcription_model, value); break;
    case openairealtime::PROP_INPUT_TRANSCRIPTION_LANGUAGE:
      set_string(config.input_transcription_language, value);
      break;
    case openairealtime::PROP_NOISE_REDUCTION:
      config.noise_reduction = static_cast<openairealtime::NoiseReduction>(g_value_get_enum(value));
      break;
    case openairealtime::PROP_INPUT_CHUNK_MS: settings.input_chunk_ms = g_value_get_uint(value); break;
    case openairealtime::PROP_MAX_INPUT_QUEUE_MS: impl->max_input_queue_ms = g_value_get_uint(value); break;
    case openairealtime::PROP_SESSION_MAX_DURATION: settings.session_max_duration_s = g_value_get_uint(value); break;
    case openairealtime::PROP_RECONNECT_MAX_ATTEMPTS: settings.reconnect_max_attempts = g_value_get_uint(value); break;
    case openairealtime::PROP_CONNECT_TIMEOUT_MS: settings.connect_timeout_ms = g_value_get_uint(value); break;
    case openairealtime::PROP_EOS_LINGER_MS: impl->eos_linger_ms = g_value_get_uint(value); break;
    case openairealtime::PROP_SHARED_PACING: impl->shared_pacing = g_value_get_boolean(value); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec); break;
  }
  GST_OBJECT_UNLOCK(self);
}

static void get_property(GObject* object, guint id, GValue* value, GParamSpec* pspec) {
  GstOpenAIRealtime* self = GST_OPENAI_REALTIME(object);
  RealtimeElement* impl = self->impl;
  if (id >= openairealtime::PROP_DROPPED_INPUT_MS) {
    if (id == openairealtime::PROP_BARGE_INS || id == openairealtime::PROP_RECONNECTS)
      g_value_set_uint(value, static_cast<guint>(impl->stat(id)));
    else
      g_value_set_uint64(value, impl->stat(id));
    return;
  }
  const openairealtime::SessionSettings& settings = impl->settings;
  const openairealtime::SessionConfig& config = settings.config;
  GST_OBJECT_LOCK(self);
  switch (id) {
    case openairealtime::PROP_URL: g_value_set_string(value, config.url.c_str()); break;
    case openairealtime::PROP_API_KEY: g_value_set_string(value, config.api_key.c_str()); break;
    case openairealtime::PROP_MODEL: g_value_set_string(value, config.model.c_str()); break;
    case openairealtime::PROP_AZURE: g_value_set_boolean(value, config.azure); break;
    case openairealtime::PROP_VOICE: g_value_set_string(value, config.voice.c_str()); break;
    case openairealtime::PROP_INSTRUCTIONS: g_value_set_string(value, config.instructions.c_str()); break;
    case openairealtime::PROP_TOOLS: g_value_set_string(value, config.tools_json.c_str()); break;
    case openairealtime::PROP_TURN_DETECTION: g_value_set_enum(value, static_cast<gint>(config.turn_detection)); break;
    case openairealtime::PROP_VAD_THRESHOLD: g_value_set_double(value, config.vad_threshold); break;
    case openairealtime::PROP_VAD_PREFIX_PADDING_MS: g_value_set_uint(value, config.vad_prefix_padding_ms); break;
    case openairealtime::PROP_VAD_SILENCE_DURATION_MS: g_value_set_uint(value, config.vad_silence_duration_ms); break;
    case openairealtime::PROP_VAD_EAGERNESS: g_value_set_enum(value, static_cast<gint>(config.vad_eagerness)); break;
    case openairealtime::PROP_VAD_IDLE_TIMEOUT_MS: g_value_set_uint(value, config.vad_idle_timeout_ms); break;
    case openairealtime::PROP_INPUT_TRANSCRIPTION_MODEL:
      g_value_set_string(value, config.input_transcription_model.c_str());
      break;
    case openairealtime::PROP_INPUT_TRANSCRIPTION_LANGUAGE:
      g_value_set_string(value, config.input_transcription_language.c_str());
      break;
    case openairealtime::PROP_NOISE_REDUCTION: g_value_set_enum(value, static_cast<gint>(config.noise_reduction)); break;
    case openairealtime::PROP_INPUT_CHUNK_MS: g_value_set_uint(value, settings.input_chunk_ms); break;
    case openairealtime::PROP_MAX_INPUT_QUEUE_MS: g_value_set_uint(value, impl->max_input_queue_ms); break;
    case openairealtime::PROP_SESSION_MAX_DURATION: g_value_set_uint(value, settings.session_max_duration_s); break;
    case openairealtime::PROP_RECONNECT_MAX_ATTEMPTS: g_value_set_uint(value, settings.reconnect_max_attempts); break;
    case openairealtime::PROP_CONNECT_TIMEOUT_MS: g_value_set_uint(value, settings.connect_timeout_ms); break;
    case openairealtime::PROP_EOS_LINGER_MS: g_value_set_uint(value, impl->eos_linger_ms); break;
    case openairealtime::PROP_SHARED_PACING: g_value_set_boolean(value, impl->shared_pacing); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec); break;
  }
  GST_OBJECT_UNLOCK(self);
}

static void finalize(GObject* object) {
  delete GST_OPENAI_REALTIME(object)->impl;
  G_OBJECT_CLASS(gst_openai_realtime_parent_class)->finalize(object);
}

static void gst_openai_realtime_init(GstOpenAIRealtime* self) {
  self->impl = new RealtimeElement(self);
  self->sinkpad = gst_pad_new_from_static_template(&sink_template, "sink");
  gst_pad_set_chain_function(self->sinkpad, sink_chain);
  gst_pad_set_event_function(self->sinkpad, sink_event);
  gst_pad_set_query_function(self->sinkpad, sink_query);
  gst_element_add_pad(GST_ELEMENT(self), self->sinkpad);

  self->srcpad = gst_pad_new_from_static_template(&src_template, "src");
  gst_pad_use_fixed_caps(self->srcpad);
  gst_pad_set_query_function(self->srcpad, src_query);
  gst_pad_set_activatemode_function(self->srcpad, src_activate_mode);
  gst_element_add_pad(GST_ELEMENT(self), self->srcpad);
}

static void install_string(GObjectClass* klass, guint id, const char* name, const char* nick, const char* blurb,
                           const char* fallback) {
  g_object_class_install_property(
      klass, id,
      g_param_spec_string(name, nick, blurb, fallback,
                          GParamFlags(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY)));
}

static void install_uint(GObjectClass* klass, guint id, const char* name, const char* nick, const char* blurb,
                         guint minimum, guint maximum, guint fallback) {
  g_object_class_install_property(
      klass, id,
      g_param_spec_uint(name, nick, blurb, minimum, maximum, fallback,
                        GParamFlags(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY)));
}

static void install_stat(GObjectClass* klass, guint id, const char* name, const char* nick, const char* blurb,
                         bool count) {
  const auto flags = GParamFlags(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_property(klass, id,
                                  count ? g_param_spec_uint(name, nick, blurb, 0, G_MAXUINT, 0, flags)
                                        : g_param_spec_uint64(name, nick, blurb, 0, G_MAXUINT64, 0, flags));
}

static void gst_openai_realtime_class_init(GstOpenAIRealtimeClass* klass) {
  using namespace openairealtime;
  GObjectClass* object_class = G_OBJECT_CLASS(klass);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);
  object_class->set_property = set_property;
  object_class->get_property = get_property;
  object_class->finalize = finalize;
  element_class->change_state = change_state;

  const SessionSettings defaults;
  install_string(object_class, PROP_URL, "url", "URL",
                 "Realtime WebSocket URL (OpenAI; ?model= is appended), or with azure=true the Azure resource "
                 "endpoint, e.g. https://x.openai.azure.com",
                 defaults.config.url.c_str());
  install_string(object_class, PROP_API_KEY, "api-key", "API key",
                 "API key: sent as 'Authorization: Bearer' (OpenAI) or 'api-key' (Azure); never logged", nullptr);
  install_string(object_class, PROP_MODEL, "model", "Model",
                 "Realtime model (OpenAI) or deployment name (Azure); fixed for the whole session",
                 defaults.config.model.c_str());
  g_object_class_install_property(
      object_class, PROP_AZURE,
      g_param_spec_boolean("azure", "Azure",
                           "Connect to Azure OpenAI: {url}/openai/v1/realtime?model={model} with an api-key header",
                           FALSE, GParamFlags(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY)));
  install_string(object_class, PROP_VOICE, "voice", "Voice",
                 "Output voice (e.g. marin, cedar, alloy); cannot change once the AI has spoken",
                 defaults.config.voice.c_str());
  install_string(object_class, PROP_INSTRUCTIONS, "instructions", "Instructions",
                 "System instructions for the model (empty = server default)", "");
  install_string(object_class, PROP_TOOLS, "tools", "Tools",
                 "Function tools as a JSON array of flat {type:\"function\", name, description, parameters} "
                 "objects; invalid JSON is rejected with a warning (empty = no tools)",
                 "");
  g_object_class_install_property(
      object_class, PROP_TURN_DETECTION,
      g_param_spec_enum("turn-detection", "Turn detection", "How the server detects the end of the caller's turn",
                        GST_TYPE_OPENAI_REALTIME_TURN_DETECTION, static_cast<gint>(defaults.config.turn_detection),
                        GParamFlags(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY)));
  g_object_class_install_property(
      object_class, PROP_VAD_THRESHOLD,
      g_param_spec_double("vad-threshold", "VAD threshold",
                          "server-vad activation threshold (higher = needs louder speech, copes better with noise)",
                          0.0, 1.0, defaults.config.vad_threshold,
                          GParamFlags(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY)));
  install_uint(object_class, PROP_VAD_PREFIX_PADDING_MS, "vad-prefix-padding-ms", "VAD prefix padding",
               "server-vad: audio kept before detected speech, in ms", 0, 10000,
               defaults.config.vad_prefix_padding_ms);
  install_uint(object_class, PROP_VAD_SILENCE_DURATION_MS, "vad-silence-duration-ms", "VAD silence duration",
               "server-vad: silence that ends a turn, in ms (shorter = faster answers, more cut-ins)", 0, 10000,
               defaults.config.vad_silence_duration_ms);
  g_object_class_install_property(
      object_class, PROP_VAD_EAGERNESS,
      g_param_spec_enum("vad-eagerness", "VAD eagerness", "semantic-vad: how eagerly the model takes its turn",
                        GST_TYPE_OPENAI_REALTIME_EAGERNESS, static_cast<gint>(defaults.config.vad_eagerness),
                        GParamFlags(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY)));
  install_uint(object_class, PROP_VAD_IDLE_TIMEOUT_MS, "vad-idle-timeout-ms", "VAD idle timeout",
               "server-vad: prompt the model after this much caller silence, in ms (0 = off)", 0, 3600000, 0);
  install_string(object_class, PROP_INPUT_TRANSCRIPTION_MODEL, "input-transcription-model",
                 "Input transcription model",
                 "Transcribe the caller with this model (e.g. gpt-4o-mini-transcribe; Azure: deployment name); "
                 "empty = off",
                 "");
  install_string(object_class, PROP_INPUT_TRANSCRIPTION_LANGUAGE, "input-transcription-language",
                 "Input transcription language", "ISO-639-1 language hint for the transcription (empty = auto)", "");
  g_object_class_install_property(
      object_class, PROP_NOISE_REDUCTION,
      g_param_spec_enum("noise-reduction", "Noise reduction", "Server-side input noise reduction",
                        GST_TYPE_OPENAI_REALTIME_NOISE_REDUCTION, static_cast<gint>(defaults.config.noise_reduction),
                        GParamFlags(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY)));
  install_uint(object_class, PROP_INPUT_CHUNK_MS, "input-chunk-ms", "Input chunk",
               "Caller audio per input_audio_buffer.append, in ms: larger sends fewer messages but adds up to "
               "its length of latency",
               20, 40, defaults.input_chunk_ms);
  install_uint(object_class, PROP_MAX_INPUT_QUEUE_MS, "max-input-queue-ms", "Max input queue",
               "Caller audio kept while the session cannot take it (connecting, reconnecting); the oldest is "
               "dropped beyond this, in ms",
               100, 60000, kDefaultMaxInputQueueMs);
  install_uint(object_class, PROP_SESSION_MAX_DURATION, "session-max-duration", "Session max duration",
               "Seconds after which the session is rotated at the next quiet moment (server limit: 3600)", 1, 3600,
               defaults.session_max_duration_s);
  install_uint(object_class, PROP_RECONNECT_MAX_ATTEMPTS, "reconnect-max-attempts", "Reconnect max attempts",
               "Reconnect attempts (exponential backoff) after a lost connection before a fatal error", 0, 100,
               defaults.reconnect_max_attempts);
  install_uint(object_class, PROP_CONNECT_TIMEOUT_MS, "connect-timeout-ms", "Connect timeout",
               "Time allowed to reach session.updated: the first connection fails fatally after it, a "
               "reconnect attempt is retried",
               100, 600000, defaults.connect_timeout_ms);
  install_uint(object_class, PROP_EOS_LINGER_MS, "eos-linger-ms", "EOS linger",
               "After input EOS, how long the output waits with nothing to play before it sends EOS, in ms", 0,
               600000, kDefaultEosLingerMs);
  g_object_class_install_property(
      object_class, PROP_SHARED_PACING,
      g_param_spec_boolean(
          "shared-pacing", "Shared pacing",
          "Push the output from a few threads (one per core) shared by every instance in the process that sets "
          "this, instead of a thread per instance (one thread and 50 wake-ups a second fewer per instance). Only "
          "where downstream never blocks (no sink syncing to the clock): one blocked push would delay every "
          "instance paced by the same thread",
          FALSE, GParamFlags(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY)));
  install_stat(object_class, PROP_DROPPED_INPUT_MS, "dropped-input-ms", "Dropped input",
               "Caller audio dropped because the input queue was full, in ms", false);
  install_stat(object_class, PROP_SENT_INPUT_MS, "sent-input-ms", "Sent input", "Caller audio sent, in ms", false);
  install_stat(object_class, PROP_RECEIVED_MS, "received-ms", "Received", "AI audio received, in ms", false);
  install_stat(object_class, PROP_PLAYED_MS, "played-ms", "Played", "AI audio pushed downstream, in ms", false);
  install_stat(object_class, PROP_BARGE_INS, "barge-ins", "Barge-ins", "Times the caller interrupted the AI", true);
  install_stat(object_class, PROP_RECONNECTS, "reconnects", "Reconnects", "Reconnection attempts", true);

  /**
   * GstOpenAIRealtime::function-call:
   * @call_id: the call to answer with #GstOpenAIRealtime::function-result
   * @name: the tool's name
   * @arguments: the arguments as JSON text
   *
   * The model called a tool. Emitted from the element's network thread: do
   * not block in the handler, and do not change the element's state from it.
   */
  signals[SIGNAL_FUNCTION_CALL] =
      g_signal_new("function-call", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST, 0, nullptr, nullptr, nullptr,
                   G_TYPE_NONE, 3, G_TYPE_STRING, G_TYPE_STRING, G_TYPE_STRING);
  /**
   * GstOpenAIRealtime::function-result:
   * @call_id: from #GstOpenAIRealtime::function-call
   * @output: the result as JSON text
   *
   * Action signal, any thread: sends the result and asks the model to speak
   * it once no response is active. Returns FALSE for an unknown call_id or
   * output that is not JSON.
   */
  signals[SIGNAL_FUNCTION_RESULT] = g_signal_new_class_handler(
      "function-result", G_TYPE_FROM_CLASS(klass), GSignalFlags(G_SIGNAL_RUN_LAST | G_SIGNAL_ACTION),
      G_CALLBACK(function_result_action), nullptr, nullptr, nullptr, G_TYPE_BOOLEAN, 2, G_TYPE_STRING, G_TYPE_STRING);
  /**
   * GstOpenAIRealtime::create-response:
   * @instructions: (nullable): instructions for this response only
   *
   * Action signal, any thread: asks the model to speak now (e.g. a greeting),
   * or after the active response is done. FALSE below PAUSED.
   */
  signals[SIGNAL_CREATE_RESPONSE] = g_signal_new_class_handler(
      "create-response", G_TYPE_FROM_CLASS(klass), GSignalFlags(G_SIGNAL_RUN_LAST | G_SIGNAL_ACTION),
      G_CALLBACK(create_response_action), nullptr, nullptr, nullptr, G_TYPE_BOOLEAN, 1, G_TYPE_STRING);

  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(
      element_class, "OpenAI Realtime bridge", "Filter/Audio/Network",
      "Talks with the OpenAI Realtime API (GA): caller audio in, the AI's paced live speech out",
      "voicebridge <voicebridge@example.org>");
  gst_type_mark_as_plugin_api(GST_TYPE_OPENAI_REALTIME_TURN_DETECTION, GstPluginAPIFlags(0));
  gst_type_mark_as_plugin_api(GST_TYPE_OPENAI_REALTIME_EAGERNESS, GstPluginAPIFlags(0));
  gst_type_mark_as_plugin_api(GST_TYPE_OPENAI_REALTIME_NOISE_REDUCTION, GstPluginAPIFlags(0));
}
