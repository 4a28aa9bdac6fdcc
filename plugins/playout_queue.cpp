#include "playout_queue.h"

#include <algorithm>

namespace openairealtime {

PlayoutQueue::PlayoutQueue(gsize max_bytes) : adapter_(gst_adapter_new()), max_bytes_(max_bytes) {}

bool PlayoutQueue::push(const std::string& item_id, GstBuffer* pcm) {
  const gsize size = gst_buffer_get_size(pcm);
  if (queued_bytes() + size > max_bytes_) {
    gst_buffer_unref(pcm);
    return false;
  }
  if (items_.empty() || items_.back().id != item_id) {
    // An item that stopped playing and resumes (rare) keeps its earlier counts.
    Item item{item_id};
    items_.push_back(std::move(item));
  }
  Item& item = items_.back();
  item.received_bytes += size;
  item.queued_bytes += size;
  gst_adapter_push(adapter_.get(), pcm);
  return true;
}

GstBuffer* PlayoutQueue::take(gsize max) {
  const gsize size = std::min(max, queued_bytes());
  if (size == 0) return nullptr;
  GstBuffer* frame = gst_adapter_take_buffer(adapter_.get(), size);
  gsize left = size;
  while (left > 0 && !items_.empty()) {
    Item& item = items_.front();
    const gsize from_item = std::min<guint64>(left, item.queued_bytes);
    item.queued_bytes -= from_item;
    item.played_bytes += from_item;
    left -= from_item;
    // Keep the last item even when drained: more of it may still arrive.
    if (item.queued_bytes == 0 && items_.size() > 1) items_.pop_front();
    else if (item.queued_bytes == 0) break;
  }
  return frame;
}

std::optional<PlayoutQueue::Cut> PlayoutQueue::flush() {
  if (queued_bytes() == 0) return std::nullopt;
  // A drained item may still lead the list; the playing one has audio queued.
  const Item& playing = *std::find_if(items_.begin(), items_.end(), [](const Item& item) { return item.queued_bytes > 0; });
  Cut cut{playing.id, std::min(playing.played_bytes, playing.received_bytes), playing.received_bytes};
  gst_adapter_clear(adapter_.get());
  items_.clear();
  return cut;
}

}  // namespace openairealtime
