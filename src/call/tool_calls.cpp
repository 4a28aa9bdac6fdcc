#include "call/tool_calls.h"

#include "assistant/assistant.h"
#include "http/metrics.h"
#include "tools/tools.h"

namespace vb {
namespace {

// After the AI calls end_call its goodbye is usually still queued for
// playout; hang up once it has had time to be heard.
constexpr guint kEndCallGraceMs = 3000;

}  // namespace

ToolCalls::ToolCalls(Tools& tools, Metrics& metrics, std::string phone_number, Handlers handlers)
    : tools_(tools), metrics_(metrics), phone_number_(std::move(phone_number)), handlers_(std::move(handlers)) {}

void ToolCalls::on_function_call(const std::string& tool_call_id, const std::string& name,
                                 const std::string& arguments) {
  if (stopped_)
    return;
  handlers_.log("tool " + name + " called");
  if (name == kEndCallTool) {
    // No function_call_output: it would make the model speak again while we hang up.
    metrics_.tool_call(name, true);
    if (!hangup_timer_.active())
      hangup_timer_ = run_after(kEndCallGraceMs, [this] {
        hangup_timer_.release();
        handlers_.hang_up();
      });
    return;
  }
  tools_.run(phone_number_, name, arguments,
             [weak = alive_.weak(), &metrics = metrics_, tool_call_id, name](std::string result) {
               // Metrics outlives every call: count tools that answer after a hang-up too.
               const bool failed = Tools::is_error(result);
               metrics.tool_call(name, !failed);
               auto self = weak.lock();
               if (!self || (*self)->stopped_)
                 return;
               ToolCalls& calls = **self;
               calls.handlers_.log("tool " + name + " answered" + (failed ? " with an error" : ""));
               calls.handlers_.answer(tool_call_id, result);
             });
}

void ToolCalls::stop() {
  stopped_ = true;
  hangup_timer_.reset();
}

}  // namespace vb
