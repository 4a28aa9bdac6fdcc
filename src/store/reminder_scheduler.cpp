#include "store/reminder_scheduler.h"

#include <algorithm>
#include <utility>

#include "log.h"

namespace vb {

ReminderScheduler::ReminderScheduler(Database& db, std::string claimer, ReminderSchedulerSettings settings,
                                     FreeCapacity free_capacity, PlaceCall place_call)
    : db_(db),
      claimer_(std::move(claimer)),
      settings_(settings),
      free_capacity_(std::move(free_capacity)),
      place_call_(std::move(place_call)) {}

void ReminderScheduler::start() {
  g_message("reminders: scheduler %s ticks every %d s (claim timeout %d s)", claimer_.c_str(), settings_.tick_s,
            settings_.claim_timeout_s);
  auto* weak = new std::weak_ptr<ReminderScheduler*>(alive_.weak());
  timer_ = ScopedSource(g_timeout_add_seconds_full(
      G_PRIORITY_DEFAULT, static_cast<guint>(settings_.tick_s),
      [](gpointer data) -> gboolean {
        if (auto self = static_cast<std::weak_ptr<ReminderScheduler*>*>(data)->lock())
          (*self)->tick();
        return G_SOURCE_CONTINUE;
      },
      weak, [](gpointer data) { delete static_cast<std::weak_ptr<ReminderScheduler*>*>(data); }));
  tick();
}

void ReminderScheduler::tick() {
  // One claim at a time: capacity is only known again once its calls started.
  if (claiming_ || !db_.healthy())
    return;
  int limit = std::min(free_capacity_(), settings_.max_claims_per_tick);
  if (limit <= 0)
    return;
  claiming_ = true;
  claim_due_reminders(db_, claimer_, limit, settings_.claim_timeout_s,
                      [weak = alive_.weak()](std::optional<std::vector<ClaimedReminder>> claimed) {
                        auto self = weak.lock();
                        if (!self)
                          return;
                        (*self)->claiming_ = false;
                        if (!claimed)
                          return;
                        for (const auto& reminder : *claimed) {
                          ++(*self)->claimed_;
                          g_message("reminder %" G_GINT64_FORMAT ": claimed for %s (attempt %d)", reminder.id,
                                    mask_phone_number("+" + reminder.phone_number).c_str(), reminder.attempts);
                          (*self)->place_call_(reminder);
                        }
                      });
}

}  // namespace vb
