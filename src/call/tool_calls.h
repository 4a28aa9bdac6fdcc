// The AI's function calls during one call, inbound or outbound. end_call hangs
// up once the goodbye has had time to be heard; every other tool runs against
// the store for the number the call was set up with (the webhook's caller or
// the reminder's callee, never the model's words), and its result goes back to
// the AI unless the call has ended meanwhile.
#pragma once

#include <functional>
#include <string>

#include "glib_util.h"

namespace vb {

class Metrics;
class Tools;

class ToolCalls {
 public:
  struct Handlers {
    std::function<void(const std::string& line)> log;
    std::function<void()> hang_up;  // end_call's grace period is over
    // A tool's result for the AI; called only until stop().
    std::function<void(const std::string& tool_call_id, const std::string& result)> answer;
  };

  ToolCalls(Tools& tools, Metrics& metrics, std::string phone_number, Handlers handlers);
  ToolCalls(const ToolCalls&) = delete;
  ToolCalls& operator=(const ToolCalls&) = delete;

  void on_function_call(const std::string& tool_call_id, const std::string& name, const std::string& arguments);
  // The call has ended: no hang-up and no answer any more (tools still running
  // are counted in the metrics when they finish).
  void stop();

 private:
  Tools& tools_;
  Metrics& metrics_;
  const std::string phone_number_;
  Handlers handlers_;
  bool stopped_ = false;
  ScopedSource hangup_timer_;
  AliveToken<ToolCalls> alive_{this};
};

}  // namespace vb
