// CallMedia, the per-call pipeline, against WhatsApp-shaped offers, the fake
// OpenAI Realtime server and a second webrtcbin playing Meta's side.
// Runs inside tests/netns-run: we answer on 198.18.0.1, "Meta" is 198.18.0.2.
#include <arpa/inet.h>
#include <gst/gst.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>

#include "call/media.h"
#include "call/shared_receive.h"
#include "call/srtp_crypto.h"
#include "call/sdp.h"
#include "fake_realtime_server.h"
#include "meta_offer.h"
#include "meta_peer.h"

namespace {

using media_test::kOurAddress;
using media_test::kToneToUsHz;
using media_test::MetaPeer;
using media_test::run_until;

constexpr int kAiToneHz = 440;    // what the fake AI says

size_t thread_count() {
  return static_cast<size_t>(std::distance(std::filesystem::directory_iterator("/proc/self/task"),
                                           std::filesystem::directory_iterator{}));
}

// Zero crossings per second over the 20 ms windows whose RMS reaches `floor`.
double dominant_hz(const std::vector<int16_t>& samples, int rate, double floor = 1000) {
  const size_t window = static_cast<size_t>(rate / 50);
  size_t voiced = 0, crossings = 0;
  for (size_t start = 0; start + window <= samples.size(); start += window) {
    double energy = 0;
    for (size_t i = start; i < start + window; ++i)
      energy += double(samples[i]) * samples[i];
    if (std::sqrt(energy / double(window)) < floor)
      continue;
    voiced += window;
    for (size_t i = start + 1; i < start + window; ++i)
      crossings += (samples[i - 1] < 0) != (samples[i] < 0);
  }
  return voiced == 0 ? 0 : double(crossings) * rate / 2 / double(voiced);
}

size_t loud_samples(const std::vector<int16_t>& samples, int floor = 1000) {
  return static_cast<size_t>(std::count_if(samples.begin(), samples.end(),
                                           [floor](int16_t s) { return std::abs(s) >= floor; }));
}

struct Recorder {
  std::string answer;
  std::string failure;
  int answers = 0, realtime_ready = 0, connected = 0, failures = 0;
  std::vector<std::pair<std::string, std::string>> transcripts;
  std::vector<std::array<std::string, 3>> function_calls;  // call id, name, arguments

  vb::MediaEvents events() {
    vb::MediaEvents events;
    events.on_answer_ready = [this](const std::string& sdp) {
      answer = sdp;
      ++answers;
    };
    events.on_realtime_ready = [this] { ++realtime_ready; };
    events.on_connected = [this] { ++connected; };
    events.on_failed = [this](const std::string& reason) {
      failure = reason;
      ++failures;
    };
    events.on_transcript = [this](std::string role, std::string text) { transcripts.emplace_back(role, text); };
    events.on_function_call = [this](std::string call_id, std::string name, std::string arguments) {
      function_calls.push_back({call_id, name, arguments});
    };
    return events;
  }
};

vb::MediaSettings settings_for(const fake_realtime::Server& server) {
  vb::MediaSettings settings;
  settings.realtime.url = server.url();
  settings.realtime.api_key = "sk-test";
  settings.realtime.model = "gpt-realtime";
  settings.realtime.voice = "marin";
  settings.realtime.instructions = "You answer the phone for a bakery.";
  settings.local_ip_addresses = {kOurAddress};
  return settings;
}

class CallMediaTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_TRUE(vb::register_static_plugins());
    std::string error;
    ASSERT_TRUE(vb::use_openssl_srtp_crypto(&error)) << error;  // as the server does
  }
  // Nothing pins the AI's VAD to the quiet test tone: replies come only
  // when we ask for them.
  fake_realtime::Server server_{fake_realtime::Behaviour{.speech_rms = 0.95}};
  Recorder recorder_;
};

TEST_F(CallMediaTest, AnswersMetaOfferWithWellFormedSdp) {
  std::string error;
  auto media = vb::CallMedia::create_answerer(media_test::meta_offer(), settings_for(server_), recorder_.events(),
                                              &error);
  ASSERT_TRUE(media) << error;
  ASSERT_TRUE(run_until([&] { return recorder_.answers > 0 || recorder_.failures > 0; })) << "no answer";
  ASSERT_EQ(recorder_.failures, 0) << recorder_.failure;
  const std::string& answer = recorder_.answer;
  EXPECT_EQ(answer, media->answer_sdp());
  EXPECT_TRUE(vb::check_answer(answer, *vb::parse_offer(media_test::meta_offer()).opus).empty());
  EXPECT_NE(answer.find("\r\na=sendrecv\r\n"), std::string::npos) << answer;
  EXPECT_NE(answer.find("\r\na=setup:active\r\n"), std::string::npos);
  EXPECT_NE(answer.find("\r\na=mid:audio\r\n"), std::string::npos);
  EXPECT_NE(answer.find("\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"), std::string::npos);
  EXPECT_NE(answer.find(std::string(" ") + kOurAddress + " "), std::string::npos) << "candidate inline";
  EXPECT_EQ(answer.find("a=ice-lite"), std::string::npos);
  EXPECT_EQ(answer.find("telephone-event"), std::string::npos);
  const size_t fingerprint = answer.find("a=fingerprint:");
  EXPECT_EQ(answer.compare(fingerprint, 22, "a=fingerprint:sha-256 "), 0);
  EXPECT_EQ(answer.find("a=fingerprint:", fingerprint + 1), std::string::npos) << "one fingerprint only";

  ASSERT_TRUE(run_until([&] { return recorder_.realtime_ready > 0; })) << "AI session never ready";
  const fake_realtime::SessionSnapshot session = server_.session(0);
  EXPECT_EQ(session.authorization, "Bearer sk-test");
  EXPECT_EQ(session.instructions, "You answer the phone for a bakery.");
}

TEST_F(CallMediaTest, AnswersOnTheOfferPayloadType) {
  const std::string offer = media_test::meta_offer({.opus_pt = 109, .opus_name = "OPUS"});
  std::string error;
  auto media = vb::CallMedia::create_answerer(offer, settings_for(server_), recorder_.events(), &error);
  ASSERT_TRUE(media) << error;
  ASSERT_TRUE(run_until([&] { return recorder_.answers > 0 || recorder_.failures > 0; }));
  ASSERT_EQ(recorder_.failures, 0) << recorder_.failure;
  EXPECT_NE(recorder_.answer.find("m=audio 9 UDP/TLS/RTP/SAVPF 109\r\n"), std::string::npos) << recorder_.answer;
  EXPECT_NE(recorder_.answer.find("a=rtpmap:109 OPUS/48000/2"), std::string::npos);
}

TEST_F(CallMediaTest, AdvertisesThePublicIp) {
  vb::MediaSettings settings = settings_for(server_);
  settings.ice.public_ip = "203.0.113.7";
  std::string error;
  auto media = vb::CallMedia::create_answerer(media_test::meta_offer(), settings, recorder_.events(), &error);
  ASSERT_TRUE(media) << error;
  ASSERT_TRUE(run_until([&] { return recorder_.answers > 0 || recorder_.failures > 0; }));
  ASSERT_EQ(recorder_.failures, 0) << recorder_.failure;
  EXPECT_NE(recorder_.answer.find(" 203.0.113.7 "), std::string::npos) << recorder_.answer;
  EXPECT_EQ(recorder_.answer.find(kOurAddress), std::string::npos);
}

TEST_F(CallMediaTest, RefusesBadInput) {
  std::string error;
  EXPECT_FALSE(vb::CallMedia::create_answerer("garbage", settings_for(server_), recorder_.events(), &error));
  EXPECT_NE(error.find("not an SDP"), std::string::npos) << error;

  vb::MediaSettings bad_tools = settings_for(server_);
  bad_tools.tools_json = R"({"type":"function"})";
  EXPECT_FALSE(vb::CallMedia::create_answerer(media_test::meta_offer(), bad_tools, recorder_.events(), &error));
  EXPECT_NE(error.find("tools"), std::string::npos) << error;

  vb::MediaSettings bad_address = settings_for(server_);
  bad_address.local_ip_addresses = {"not-an-ip"};
  EXPECT_FALSE(vb::CallMedia::create_answerer(media_test::meta_offer(), bad_address, recorder_.events(), &error));
  EXPECT_NE(error.find("not-an-ip"), std::string::npos) << error;
  EXPECT_EQ(recorder_.failures, 0);
}

// The only port ICE may use is taken: gathering never completes on 1.22.0,
// the timeout fallback fires and the call fails instead of sending an answer
// without candidates.
TEST_F(CallMediaTest, FailsWhenGatheringFindsNoCandidate) {
  const int socket_fd = socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(socket_fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = 0;
  inet_pton(AF_INET, kOurAddress, &address.sin_addr);
  ASSERT_EQ(bind(socket_fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  socklen_t length = sizeof address;
  getsockname(socket_fd, reinterpret_cast<sockaddr*>(&address), &length);
  const int taken_port = ntohs(address.sin_port);

  vb::MediaSettings settings = settings_for(server_);
  settings.ice.port_min = settings.ice.port_max = taken_port;
  settings.gather_timeout_ms = 300;
  std::string error;
  auto media = vb::CallMedia::create_answerer(media_test::meta_offer(), settings, recorder_.events(), &error);
  ASSERT_TRUE(media) << error;
  ASSERT_TRUE(run_until([&] { return recorder_.answers > 0 || recorder_.failures > 0; }));
  EXPECT_EQ(recorder_.answers, 0) << recorder_.answer;
  EXPECT_NE(recorder_.failure.find("no candidates"), std::string::npos) << recorder_.failure;
  EXPECT_TRUE(media->answer_sdp().empty());
  close(socket_fd);
}

TEST_F(CallMediaTest, RealtimeErrorFailsTheCall) {
  fake_realtime::Server locked{fake_realtime::Behaviour{.required_api_key = "sk-other"}};
  std::string error;
  auto media = vb::CallMedia::create_answerer(media_test::meta_offer(), settings_for(locked), recorder_.events(),
                                              &error);
  ASSERT_TRUE(media) << error;
  ASSERT_TRUE(run_until([&] { return recorder_.failures > 0; }, 20000)) << "a refused AI session must fail the call";
  EXPECT_NE(recorder_.failure.find("realtime error authentication_error"), std::string::npos) << recorder_.failure;
  EXPECT_EQ(recorder_.realtime_ready, 0);
}

// The AI's tool call reaches the main loop through on_function_call, our
// result reaches the AI, and its spoken answer comes back as a transcript.
TEST_F(CallMediaTest, FunctionCallRoundTrip) {
  fake_realtime::Server server{fake_realtime::Behaviour{
      .speech_rms = 0.95, .function_call = fake_realtime::FunctionCall{"lookup_order", R"({"order":"A-17"})"}}};
  std::string error;
  auto media = vb::CallMedia::create_answerer(media_test::meta_offer(), settings_for(server), recorder_.events(),
                                              &error);
  ASSERT_TRUE(media) << error;
  ASSERT_TRUE(run_until([&] { return recorder_.realtime_ready > 0 || recorder_.failures > 0; }));
  media->start_sending();  // asks for the greeting: the fake answers it with the tool call
  ASSERT_TRUE(run_until([&] { return !recorder_.function_calls.empty() || recorder_.failures > 0; }))
      << recorder_.failure;
  ASSERT_FALSE(recorder_.function_calls.empty()) << recorder_.failure;
  const auto& call = recorder_.function_calls.front();
  EXPECT_EQ(call[1], "lookup_order");
  EXPECT_EQ(call[2], R"({"order":"A-17"})");
  media->send_function_result(call[0], R"({"status":"shipped"})");
  ASSERT_TRUE(run_until([&] { return !server.session(0).function_outputs.empty(); }));
  EXPECT_EQ(server.session(0).function_outputs.front(), R"({"status":"shipped"})");
  const auto assistant_spoke = [&] {
    return std::any_of(recorder_.transcripts.begin(), recorder_.transcripts.end(),
                       [](const auto& line) { return line.first == "assistant"; });
  };
  ASSERT_TRUE(run_until(assistant_spoke));
  EXPECT_EQ(recorder_.failures, 0) << recorder_.failure;
}

// One call from offer to audio in both directions. Returns after start_sending
// once the AI's reply was heard by "Meta".
void run_call(fake_realtime::Server& server, Recorder& recorder, bool check_media) {
  MetaPeer meta;
  const std::string offer = meta.make_offer();
  ASSERT_NE(offer.find("a=candidate:"), std::string::npos) << offer;
  std::string error;
  auto media = vb::CallMedia::create_answerer(offer, settings_for(server), recorder.events(), &error);
  ASSERT_TRUE(media) << error;
  ASSERT_TRUE(run_until([&] { return recorder.answers > 0 || recorder.failures > 0; }));
  ASSERT_EQ(recorder.failures, 0) << recorder.failure;
  ASSERT_TRUE(meta.accept_answer(recorder.answer));
  ASSERT_TRUE(run_until([&] { return (recorder.connected > 0 && recorder.realtime_ready > 0) || recorder.failures; }))
      << "not connected";
  ASSERT_EQ(recorder.failures, 0) << recorder.failure;
  const size_t session = server.session_count() - 1;

  // The caller's tone reaches the AI, resampled to 24 kHz...
  ASSERT_TRUE(run_until([&] { return server.session(session).input_samples >= 24000; }));
  // ...while nothing goes back before Meta's accept (start_sending).
  EXPECT_EQ(meta.received_count(), 0u);
  if (check_media) {
    const std::vector<int16_t> heard = server.session(session).input_audio;
    EXPECT_NEAR(dominant_hz(heard, 24000), kToneToUsHz, kToneToUsHz * 0.05);
  }

  media->start_sending();
  ASSERT_TRUE(run_until([&] { return server.session(session).responses_started > 0; }));
  // The AI's 1 s tone, paced in real time, then silence frames.
  ASSERT_TRUE(run_until([&] { return loud_samples(meta.received()) >= 48000 * 8 / 10; }, 15000))
      << "AI audio not heard by the caller";
  if (check_media) {
    const std::vector<int16_t> received = meta.received();
    EXPECT_NEAR(dominant_hz(received, 48000), kAiToneHz, kAiToneHz * 0.05);
    EXPECT_GT(received.size(), loud_samples(received)) << "silence frames are sent too";
  }
  EXPECT_EQ(recorder.failures, 0) << recorder.failure;
}

TEST_F(CallMediaTest, AudioFlowsBothWaysAndThreadsReturnToBaseline) {
  run_call(server_, recorder_, true);
  if (HasFatalFailure())
    return;
  // Process-wide threads (clock, GLib pools) now exist: this is the baseline.
  run_until([] { return false; }, 500);
  const size_t baseline = thread_count();

  Recorder second;
  run_call(server_, second, false);
  if (HasFatalFailure())
    return;
  EXPECT_TRUE(run_until([&] { return thread_count() <= baseline; }, 20000))
      << thread_count() << " threads after the call, " << baseline << " before";
}

// ReceiveTakeover on a connected webrtcbin 1.22 (here Meta's side, a plain
// webrtcbin): at the next packet our pad replaces nicesrc ! capsfilter ! queue
// in front of dtlssrtpdec,
// nicesrc and the queue stop, audio keeps arriving through a shared receive
// thread, and after stop() nothing more is pushed.
TEST_F(CallMediaTest, ReceiveTakeoverKeepsAudioFlowingUntilStopped) {
  MetaPeer meta;
  std::string error;
  auto media = vb::CallMedia::create_answerer(meta.make_offer(), settings_for(server_), recorder_.events(), &error);
  ASSERT_TRUE(media) << error;
  ASSERT_TRUE(run_until([&] { return recorder_.answers > 0 || recorder_.failures > 0; }));
  ASSERT_TRUE(meta.accept_answer(recorder_.answer));
  ASSERT_TRUE(run_until([&] { return recorder_.connected > 0 || recorder_.failures > 0; }));
  media->start_sending();
  ASSERT_TRUE(run_until([&] { return meta.received_count() > 0; }, 15000)) << "no audio before the takeover";

  auto find = [&](const char* factory_name) -> GstElement* {
    g_autoptr(GstIterator) it = gst_bin_iterate_recurse(GST_BIN(meta.webrtc()));
    GValue item = G_VALUE_INIT;
    GstElement* found = nullptr;
    while (!found && gst_iterator_next(it, &item) == GST_ITERATOR_OK) {
      auto* element = GST_ELEMENT(g_value_get_object(&item));
      GstElementFactory* factory = gst_element_get_factory(element);
      if (factory && g_str_equal(GST_OBJECT_NAME(factory), factory_name))
        found = GST_ELEMENT(gst_object_ref(element));
      g_value_reset(&item);
    }
    g_value_unset(&item);
    return found;
  };
  g_autoptr(GstElement) queue = find("queue");
  g_autoptr(GstElement) nicesrc = find("nicesrc");
  ASSERT_TRUE(queue && nicesrc) << "webrtcbin 1.22's transportreceivebin has nicesrc and a queue";
  g_autoptr(GstPad) queue_src = gst_element_get_static_pad(queue, "src");
  ASSERT_TRUE(gst_pad_is_linked(queue_src));

  std::shared_ptr<vb::ReceiveTakeover> takeover = vb::ReceiveTakeover::start(meta.webrtc());
  ASSERT_TRUE(takeover);
  EXPECT_TRUE(run_until([&] { return !gst_pad_is_linked(queue_src); })) << "relinked at the next packet";
  EXPECT_TRUE(run_until([&] { return GST_STATE(nicesrc) == GST_STATE_NULL && GST_STATE(queue) == GST_STATE_NULL; }))
      << "nicesrc and the queue stop";
  size_t before = meta.received_count();
  EXPECT_TRUE(run_until([&] { return meta.received_count() >= before + 48000; }, 15000))
      << "audio still arrives after the takeover";

  takeover->stop();
  run_until([] { return false; }, 200);  // what was already pushed drains
  before = meta.received_count();
  run_until([] { return false; }, 1000);
  EXPECT_EQ(meta.received_count(), before) << "nothing is pushed after stop()";
  EXPECT_EQ(recorder_.failures, 0) << recorder_.failure;
}

// A business-initiated call: we offer, "Meta" (a second CallMedia on the other
// veth end) answers, the answer is applied and audio we send reaches it.
TEST_F(CallMediaTest, OffersABusinessInitiatedCallAndConnectsOnTheAnswer) {
  Recorder offer_events;
  vb::MediaEvents events = offer_events.events();
  std::string offer;
  events.on_offer_ready = [&](const std::string& sdp) { offer = sdp; };
  std::string error;
  auto offerer = vb::CallMedia::create_offerer(settings_for(server_), std::move(events), &error);
  ASSERT_TRUE(offerer) << error;
  EXPECT_FALSE(offerer->apply_answer("v=0", &error)) << "no offer sent yet";
  ASSERT_TRUE(run_until([&] { return !offer.empty() || offer_events.failures > 0; })) << "no offer";
  ASSERT_EQ(offer_events.failures, 0) << offer_events.failure;

  const auto parsed = vb::parse_offer(offer);
  ASSERT_TRUE(parsed.opus) << parsed.error << "\n" << offer;
  EXPECT_EQ(parsed.opus->payload_type, 111);
  EXPECT_NE(offer.find("\r\na=sendrecv\r\n"), std::string::npos) << offer;
  EXPECT_NE(offer.find("\r\na=setup:actpass\r\n"), std::string::npos) << offer;
  EXPECT_NE(offer.find(std::string(" ") + kOurAddress + " "), std::string::npos) << "candidate inline";
  const size_t fingerprint = offer.find("a=fingerprint:");
  ASSERT_NE(fingerprint, std::string::npos);
  EXPECT_EQ(offer.compare(fingerprint, 22, "a=fingerprint:sha-256 "), 0);
  EXPECT_EQ(offer.find("a=fingerprint:", fingerprint + 1), std::string::npos) << "one fingerprint only";
  EXPECT_EQ(offer.find("m=", offer.find("m=audio") + 1), std::string::npos) << "one m-line only";

  Recorder meta;
  vb::MediaSettings meta_settings = settings_for(server_);
  meta_settings.local_ip_addresses = {media_test::kMetaAddress};
  auto answerer = vb::CallMedia::create_answerer(offer, meta_settings, meta.events(), &error);
  ASSERT_TRUE(answerer) << error;
  ASSERT_TRUE(run_until([&] { return meta.answers > 0 || meta.failures > 0; }));
  ASSERT_EQ(meta.failures, 0) << meta.failure;

  const std::string pcmu_only =
      "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n";
  EXPECT_FALSE(offerer->apply_answer(pcmu_only, &error));
  EXPECT_NE(error.find("unusable answer"), std::string::npos) << error;
  ASSERT_TRUE(offerer->apply_answer(meta.answer, &error)) << error;
  EXPECT_FALSE(offerer->apply_answer(meta.answer, &error)) << "applied twice";
  ASSERT_TRUE(run_until([&] {
    return (offer_events.connected > 0 && meta.connected > 0 && offer_events.realtime_ready > 0 &&
            meta.realtime_ready > 0) ||
           offer_events.failures > 0 || meta.failures > 0;
  }, 15000)) << "not connected";
  ASSERT_EQ(offer_events.failures, 0) << offer_events.failure;
  ASSERT_EQ(meta.failures, 0) << meta.failure;

  // Nothing is sent before the valve opens; then our AI's audio reaches the callee.
  EXPECT_EQ(answerer->totals().frames_in, 0u);
  offerer->start_sending();
  ASSERT_TRUE(run_until([&] { return answerer->totals().frames_in >= 50; }, 15000))
      << "no audio reached the callee: " << offerer->totals().frames_out << " frames played, "
      << answerer->totals().frames_in << " received";
}

}  // namespace

int main(int argc, char** argv) {
  gst_init(&argc, &argv);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
