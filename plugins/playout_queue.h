// The AI's decoded speech waiting to be paced out, with per-item accounting of
// what was received and what was actually handed downstream (the numbers a
// conversation.item.truncate needs). Not thread-safe: the element locks it.
#pragma once

#include <gst/base/gstadapter.h>

#include <deque>
#include <optional>
#include <string>

#include "glib_ptr.h"

namespace openairealtime {

class PlayoutQueue {
 public:
  struct Cut {
    std::string item_id;
    guint64 played_bytes;
    guint64 received_bytes;
  };

  explicit PlayoutQueue(gsize max_bytes);

  // Queues `pcm` (takes the reference) for `item_id`. False, and nothing is
  // queued, when the queue would exceed its bound.
  bool push(const std::string& item_id, GstBuffer* pcm);
  gsize queued_bytes() const { return gst_adapter_available(adapter_.get()); }

  // Takes up to `max` bytes (the caller pads a short frame) and accounts them
  // as played. Returns nullptr when empty.
  GstBuffer* take(gsize max);

  // Drops everything queued. Returns where the playing item stood, or nullopt
  // when nothing was queued.
  std::optional<Cut> flush();

 private:
  struct Item {
    std::string id;
    guint64 received_bytes = 0;
    guint64 played_bytes = 0;
    guint64 queued_bytes = 0;
  };

  GObjectPtr<GstAdapter> adapter_;
  gsize max_bytes_;
  std::deque<Item> items_;  // items with queued audio, oldest (playing) first
};

}  // namespace openairealtime
