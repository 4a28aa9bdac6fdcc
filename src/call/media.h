// One call's GStreamer pipeline, answering WhatsApp's WebRTC offer and
// bridging its audio through the openairealtime element:
//
//   webrtcbin src → rtpopusdepay → voiceopusdec → S16LE 24 kHz mono
//     → openairealtime → valve (closed until start_sending and DTLS keys)
//     → voiceopusenc → rtpopuspay → webrtcbin sink_0
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <gst/gst.h>

#include "call/sdp.h"
#include "config.h"
#include "glib_util.h"
#include "http/metrics.h"

namespace vb {

class ReceiveTakeover;

struct MediaSettings {
  IceSettings ice;
  RealtimeSettings realtime;
  std::string instructions;  // per-call instructions (override realtime.instructions when non-empty)
  std::string tools_json;    // JSON array of tool definitions for the session ("" = none)
  int gather_timeout_ms = 2500;
  int opus_complexity = 2;  // voiceopusenc's complexity (0-10): CPU per speaking call vs quality
  // Addresses ICE gathers on (IP literals); empty = every interface. Tests pin
  // it to one veth address, multi-homed servers to the media interface.
  std::vector<std::string> local_ip_addresses;
};

// Invoked on the main loop (default GMainContext), never from a streaming or
// network thread, and never after the CallMedia is destroyed.
struct MediaEvents {
  std::function<void(const std::string& answer_sdp)> on_answer_ready;
  // Offerer (business-initiated call): the offer to send with Graph connect, candidates inline.
  std::function<void(const std::string& offer_sdp)> on_offer_ready;
  std::function<void()> on_realtime_ready;  // first "ready" of the AI session (reconnects are not reported)
  std::function<void()> on_connected;       // ICE and DTLS connected
  std::function<void(const std::string& reason)> on_failed;  // once, for the first fatal problem
  std::function<void(std::string call_id, std::string name, std::string arguments)> on_function_call;
  std::function<void(std::string role, std::string text)> on_transcript;
  // Tokens one AI response used (its response.done), whatever its status.
  std::function<void(int64_t input_tokens, int64_t output_tokens)> on_usage;
  // An error event of the Realtime API, fatal or not (its `code`, "" when it had none).
  std::function<void(const std::string& code)> on_realtime_error;
};

// Registers the statically linked openairealtime, voiceopus and voicertp plugins; safe
// to call more than once. Call it after gst_init() and before the first CallMedia.
bool register_static_plugins();

// Does once, before the first call, what would otherwise delay it: loads every
// plugin a call uses and has GStreamer's DTLS make its process-wide
// certificate (~240 ms here). Blocks for that long; call it at startup.
void warm_up_media();

class CallMedia {
 public:
  // Builds and starts the pipeline and begins answering offer_sdp. Returns
  // nullptr with *error set when the offer or the pipeline is unusable; the
  // answer itself arrives later through on_answer_ready (or on_failed).
  // Must be called on the main loop's thread.
  static std::unique_ptr<CallMedia> create_answerer(const std::string& offer_sdp, const MediaSettings& settings,
                                                    MediaEvents events, std::string* error);

  // Builds and starts the pipeline as the offerer of a business-initiated
  // call: one sendrecv audio m-line with Opus on PT 111 (no telephone-event:
  // webrtcbin 1.22 offers only the transceiver's codec), one sha-256
  // fingerprint, a=setup:actpass, candidates inline once gathering completed.
  // The offer arrives through on_offer_ready (or on_failed); the callee's
  // answer goes to apply_answer(). Must be called on the main loop's thread.
  static std::unique_ptr<CallMedia> create_offerer(const MediaSettings& settings, MediaEvents events,
                                                   std::string* error);
  // Applies the callee's answer to our offer (Meta's connect webhook); false
  // with *error when the answer is unusable or one was applied already.
  // webrtcbin's own refusal arrives later through on_failed.
  bool apply_answer(const std::string& answer_sdp, std::string* error);

  // Opens the send path (Meta's accept returned 200): audio, silence at
  // least, reaches the caller from the next frame on; then asks the AI to greet.
  void start_sending();
  void send_function_result(const std::string& call_id, const std::string& output_json);
  // Asks the AI to speak now; empty instructions = the session's own.
  void ask_to_speak(const std::string& instructions);
  const std::string& answer_sdp() const { return answer_sdp_; }
  // Audio exchanged with the AI and barge-ins so far (the element's counters).
  MediaTotals totals() const;
  // RTP packets received from the caller so far; cheap, for liveness checks.
  uint64_t inbound_packets() const;

  // Stops and frees the pipeline. Call it on the main loop, not from inside
  // one of the MediaEvents callbacks.
  ~CallMedia();
  CallMedia(const CallMedia&) = delete;
  CallMedia& operator=(const CallMedia&) = delete;

  // Shared with the callbacks GStreamer runs on its own threads.
  struct Guard;

 private:
  CallMedia(MediaSettings settings, MediaEvents events);
  bool build(std::string* error);
  bool build_audio_chain(std::string* error);
  bool add_send_transceiver(std::string* error);
  void count_inbound_packets(GstElement* depayloader);
  void connect_signals();
  void open_send_path();
  bool configure_ice(std::string* error);
  bool configure_realtime(std::string* error);
  bool negotiate(const std::string& offer_sdp, std::string* error);
  void create_offer();
  void finish_offer(std::string offer);
  void local_description_applied();
  void gathering_completed();
  void finish_answer(const char* why);
  void connection_state_changed(int state);
  void function_called(const std::string& call_id, const std::string& name, const std::string& arguments);
  void on_bus_message(GstMessage* message);
  void usage_reported(const GstStructure* usage);
  void realtime_error_reported(const GstStructure* details);
  void report_failure(const std::string& reason);

  MediaSettings settings_;
  MediaEvents events_;
  std::shared_ptr<Guard> guard_;
  GstElement* pipeline_ = nullptr;  // owned; the elements below belong to it
  GstElement* webrtc_ = nullptr;
  GstElement* realtime_ = nullptr;
  GstElement* valve_ = nullptr;
  bool bus_watched_ = false;
  ScopedSource gather_timer_;
  std::string answer_sdp_;
  OpusParams offer_;
  bool local_description_set_ = false;
  bool answer_done_ = false;
  bool realtime_ready_ = false;
  bool connected_ = false;
  // Reads the call's packets on a shared thread once connected (shared_receive.cpp).
  std::shared_ptr<ReceiveTakeover> receive_takeover_;
  bool failed_ = false;
  bool sending_ = false;         // start_sending was called
  bool send_keys_set_ = false;   // webrtcbin unblocked its send path
  bool send_path_open_ = false;  // the valve is open
  bool offerer_ = false;
  std::string offer_sdp_;        // offerer: the offer sent to Meta
  bool answer_applied_ = false;  // offerer: the callee's answer was handed to webrtcbin
};

// Notices a caller whose media has stopped: a hang-up whose terminate
// webhook went to another replica, or a vanished network. Checks the
// CallMedia's packet count from a main-loop timer.
class InboundMediaWatch {
 public:
  // Calls on_silent once, on the main loop, when `media` has received no RTP
  // for timeout_s (counted from now). `media` must outlive the watch or stop().
  void start(const CallMedia& media, int timeout_s, std::function<void()> on_silent);
  void stop();

 private:
  void check();

  const CallMedia* media_ = nullptr;
  int64_t timeout_us_ = 0;
  uint64_t last_count_ = 0;
  int64_t last_change_us_ = 0;  // monotonic
  std::function<void()> on_silent_;
  ScopedSource timer_;
};

}  // namespace vb
