#include "call/call_table.h"

#include <algorithm>
#include <vector>

#include "glib_util.h"
#include "log.h"
#include "whatsapp/graph_api.h"

namespace vb {
namespace {

// How long deliveries and finished call ids are remembered. Meta retries a
// calling webhook for minutes, not hours; a connect older than
// WEBHOOK_MAX_AGE_S is refused anyway.
constexpr auto kMemory = std::chrono::hours(1);
constexpr size_t kPruneThreshold = 4096;

}  // namespace

CallTable::CallTable(const Config& config, GraphApi& graph, Tools& tools, Database* db, Metrics& metrics)
    : config_(config), graph_(graph), tools_(tools), db_(db), metrics_(metrics) {}

CallTable::~CallTable() = default;

void CallTable::handle(const WebhookBatch& batch) {
  for (const auto& warning : batch.warnings)
    g_warning("webhook: %s", warning.c_str());
  // Meta does not order deliveries: a terminate handled first makes a connect
  // for the same call in this batch a late one.
  std::vector<const CallEvent*> ordered;
  for (const auto& event : batch.events)
    ordered.push_back(&event);
  std::stable_partition(ordered.begin(), ordered.end(),
                        [](const CallEvent* event) { return event->kind == CallEvent::Kind::Terminate; });
  for (const CallEvent* event : ordered) {
    if (!event->phone_number_id.empty() && event->phone_number_id != config_.phone_number_id) {
      g_message("webhook: call %s is for phone number id %s, not ours; ignored", event->call_id.c_str(),
                event->phone_number_id.c_str());
      continue;
    }
    if (!is_first_delivery(event->call_id, event->event)) {
      g_message("webhook: duplicate %s for call %s dropped", event->event.c_str(), event->call_id.c_str());
      continue;
    }
    switch (event->kind) {
      case CallEvent::Kind::Connect: on_connect(*event); break;
      case CallEvent::Kind::Terminate: on_terminate(*event); break;
      case CallEvent::Kind::Other:
        g_message("webhook: call %s event '%s' ignored", event->call_id.c_str(), event->event.c_str());
        break;
    }
  }
  for (const auto& status : batch.statuses)
    on_status(status);
}

bool CallTable::is_first_delivery(const std::string& call_id, const std::string& event) {
  forget_old_entries();
  return seen_deliveries_.emplace(call_id + '\n' + event, Clock::now()).second;
}

bool CallTable::is_stale(const CallEvent& event) const {
  if (event.timestamp <= 0)
    return false;  // no timestamp to judge by
  const int64_t age_s = g_get_real_time() / G_USEC_PER_SEC - event.timestamp;
  return age_s > config_.webhook_max_age_s;
}

void CallTable::on_connect(const CallEvent& event) {
  const std::string& call_id = event.call_id;
  if (event.direction == "BUSINESS_INITIATED" && event.sdp_type == "answer")
    return on_outbound_answer(event);
  if (event.direction != "USER_INITIATED" || event.sdp_type != "offer") {
    g_message("call %s: connect (%s, %s) is not a user-initiated offer; ignored", call_id.c_str(),
              event.direction.c_str(), event.sdp_type.c_str());
    return;
  }
  if (finished_calls_.count(call_id)) {
    g_message("call %s: connect after its terminate; not answered", call_id.c_str());
    return;
  }
  if (calls_.count(call_id))
    return;  // a redelivery with another event name spelling; already handled
  if (is_stale(event)) {
    g_message("call %s: connect is %" G_GINT64_FORMAT " s old (limit %d s); not answered", call_id.c_str(),
              g_get_real_time() / G_USEC_PER_SEC - event.timestamp, config_.webhook_max_age_s);
    return;
  }
  if (refuse_if_unservable(event))
    return;
  InboundCallInfo info{call_id, CallerContext{event.from, event.caller_name}, event.sdp};
  auto call = std::make_unique<Call>(std::move(info), config_, graph_, tools_, db_, metrics_,
                                     [this](const std::string& id) { remove_later(id); });
  Call& started = *calls_.emplace(call_id, std::move(call)).first->second;
  started.start();
}

// Rejects (through the Graph API) a new call we cannot take; true if it did.
bool CallTable::refuse_if_unservable(const CallEvent& event) {
  const char* why = nullptr;
  if (draining_) {
    why = "the server is draining (shutting down)";
  } else if (event.from.empty()) {
    // Tools are scoped to the caller's number; without it we cannot serve the call.
    why = "the connect carries no caller number";
  } else if (at_capacity()) {
    ++rejected_over_capacity_;
    metrics_.capacity_rejection();
    why = "at capacity (MAX_CONCURRENT_CALLS)";
  }
  if (!why)
    return false;
  metrics_.call_ended(CallDirection::Inbound, CallOutcome::Rejected);
  reject(event.call_id, why);
  return true;
}

// Meta's answer to one of our calls. It may overtake connect's HTTP response
// (which carries the call id): our biz_opaque_callback_data names the reminder.
void CallTable::on_outbound_answer(const CallEvent& event) {
  OutboundCall* call = outbound_for(event.call_id, event.biz_opaque_callback_data);
  if (!call) {
    g_message("call %s: answer for no call of ours (%s); ignored", event.call_id.c_str(),
              event.biz_opaque_callback_data.c_str());
    return;
  }
  call->on_answer(event.call_id, event.sdp);
}

// By call id, or by the reminder our biz_opaque_callback_data names while
// connect's reply (with the call id) has not arrived yet.
OutboundCall* CallTable::outbound_for(const std::string& call_id, const std::string& opaque) {
  if (auto id = outbound_call_ids_.find(call_id); id != outbound_call_ids_.end()) {
    auto call = outbound_.find(id->second);
    return call == outbound_.end() ? nullptr : call->second.get();
  }
  if (!g_str_has_prefix(opaque.c_str(), "reminder:"))
    return nullptr;
  auto it = outbound_.find(g_ascii_strtoll(opaque.c_str() + 9, nullptr, 10));
  if (it == outbound_.end() || !it->second->call_id().empty())
    return nullptr;
  return it->second.get();
}

void CallTable::place_reminder_call(const ClaimedReminder& reminder, const std::string& claimer,
                                    const ReminderRetryPolicy& policy) {
  if (!db_ || outbound_.count(reminder.id)) {
    // A claim retaken while our call still rings: REMINDER_CLAIM_TIMEOUT_S is shorter than a call's setup.
    g_warning("reminder %" G_GINT64_FORMAT ": not called: %s", reminder.id,
              db_ ? "this server is calling it already" : "no database");
    return;
  }
  auto call = std::make_unique<OutboundCall>(
      reminder, claimer, policy, config_, graph_, tools_, *db_, metrics_,
      [this](OutboundCall& placed) { outbound_call_ids_[placed.call_id()] = placed.reminder_id(); },
      [this](OutboundCall& ended) { remove_outbound_later(ended.reminder_id(), ended.call_id()); });
  outbound_.emplace(reminder.id, std::move(call)).first->second->start();
}

int CallTable::free_capacity() const {
  if (draining_ || at_capacity())
    return 0;
  return config_.max_concurrent_calls - static_cast<int>(active_calls());
}

void CallTable::remove_outbound_later(int64_t reminder_id, const std::string& call_id) {
  if (!call_id.empty())
    finished_calls_.emplace(call_id, Clock::now());
  run_soon([weak = alive_.weak(), reminder_id, call_id] {
    auto self = weak.lock();
    if (!self)
      return;
    CallTable& table = **self;
    table.outbound_call_ids_.erase(call_id);
    if (table.outbound_.erase(reminder_id) && table.on_call_removed)
      table.on_call_removed(call_id);
  });
}

void CallTable::on_terminate(const CallEvent& event) {
  std::string detail = event.status;
  if (event.duration_s >= 0)
    detail += ", " + std::to_string(event.duration_s) + " s";
  for (const auto& error : event.errors)
    detail += ", error " + std::to_string(error.code) + " " + error.message;
  g_message("call %s: terminated by Meta (%s)", event.call_id.c_str(), detail.c_str());
  finished_calls_.emplace(event.call_id, Clock::now());
  auto it = calls_.find(event.call_id);
  if (it != calls_.end())
    it->second->end(EndReason::CallerHungUp);
  if (OutboundCall* outbound = outbound_for(event.call_id, event.biz_opaque_callback_data))
    outbound->on_terminated(event.call_id);
}

void CallTable::on_status(const CallStatus& status) {
  g_message("call %s: status %s", status.call_id.c_str(), status.status.c_str());
  if (OutboundCall* outbound = outbound_for(status.call_id, status.biz_opaque_callback_data))
    outbound->on_status(status.call_id, status.status);
}

void CallTable::reject(const std::string& call_id, const char* why) {
  g_warning("call %s: rejecting: %s", call_id.c_str(), why);
  finished_calls_.emplace(call_id, Clock::now());
  graph_.reject(call_id, [call_id](const GraphResult& result) {
    if (!result.ok)
      g_warning("call %s: reject not confirmed by Meta", call_id.c_str());
  });
}

// A call reports its end from inside its own callbacks: delete it afterwards.
void CallTable::remove_later(const std::string& call_id) {
  finished_calls_.emplace(call_id, Clock::now());
  run_soon([weak = alive_.weak(), call_id] {
    auto self = weak.lock();
    if (!self)
      return;
    CallTable& table = **self;
    if (table.calls_.erase(call_id) && table.on_call_removed)
      table.on_call_removed(call_id);
  });
}

size_t CallTable::active_calls(CallDirection direction) const {
  if (direction == CallDirection::Outbound)
    return outbound_.size();
  auto in_direction = [direction](const auto& entry) { return entry.second->direction() == direction; };
  return static_cast<size_t>(std::count_if(calls_.begin(), calls_.end(), in_direction));
}

MediaTotals CallTable::live_media() const {
  MediaTotals totals;
  for (const auto& [id, call] : calls_)
    totals += call->media_totals();
  for (const auto& [id, call] : outbound_)
    totals += call->media_totals();
  return totals;
}

void CallTable::end_all(EndReason reason) {
  std::vector<Call*> live;
  for (auto& [id, call] : calls_)
    live.push_back(call.get());
  for (Call* call : live)
    call->end(reason);
  std::vector<OutboundCall*> outbound;
  for (auto& [id, call] : outbound_)
    outbound.push_back(call.get());
  for (OutboundCall* call : outbound)
    call->end(to_string(reason));
}

void CallTable::forget_old_entries() {
  if (seen_deliveries_.size() + finished_calls_.size() < kPruneThreshold)
    return;
  const auto cutoff = Clock::now() - kMemory;
  auto prune = [cutoff](auto& entries) {
    std::erase_if(entries, [cutoff](const auto& entry) { return entry.second < cutoff; });
  };
  prune(seen_deliveries_);
  prune(finished_calls_);
}

}  // namespace vb
