// The caller's PCM waiting for the network thread: a fixed-size byte ring
// that drops its oldest bytes when full. Not thread-safe: the element locks it.
#pragma once

#include <glib.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace openairealtime {

class InputQueue {
 public:
  // Drops everything and sets the bound (allocated once, reused).
  void reset(gsize capacity) {
    ring_.assign(capacity, 0);
    head_ = 0;
    size_ = 0;
  }
  gsize size() const { return size_; }

  // Appends `data`; returns how many old bytes were dropped to make room.
  gsize push(const guint8* data, gsize length) {
    const gsize capacity = ring_.size();
    if (capacity == 0) return length;
    gsize dropped = 0;
    if (length > capacity) {  // only the newest `capacity` bytes can be kept
      dropped = length - capacity;
      data += dropped;
      length = capacity;
    }
    const gsize overflow = size_ + length > capacity ? size_ + length - capacity : 0;
    head_ = (head_ + overflow) % capacity;
    size_ -= overflow;
    dropped += overflow;
    gsize tail = (head_ + size_) % capacity;
    const gsize first = std::min(length, capacity - tail);
    std::memcpy(ring_.data() + tail, data, first);
    std::memcpy(ring_.data(), data + first, length - first);
    size_ += length;
    return dropped;
  }

  // Copies up to `max` bytes out, oldest first.
  gsize pop(guint8* dest, gsize max) {
    const gsize capacity = ring_.size();
    const gsize length = std::min(max, size_);
    if (length == 0) return 0;
    const gsize first = std::min(length, capacity - head_);
    std::memcpy(dest, ring_.data() + head_, first);
    std::memcpy(dest + first, ring_.data(), length - first);
    head_ = (head_ + length) % capacity;
    size_ -= length;
    return length;
  }

  void clear() {
    head_ = 0;
    size_ = 0;
  }

 private:
  std::vector<guint8> ring_;
  gsize head_ = 0;
  gsize size_ = 0;
};

}  // namespace openairealtime
