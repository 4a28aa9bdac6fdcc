// The caller's audio: one period of pre-encoded 20 ms Opus payloads, looped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace callers {

class Payloads {
 public:
  static constexpr size_t kMaxPayload = 1275;  // the largest Opus packet (RFC 6716)

  // Reads [2-byte big-endian length][payload] records. Returns an empty string
  // on success, otherwise why the file is unusable.
  std::string load(const std::string &path);

  size_t frames() const { return offsets_.size(); }
  const uint8_t *data(size_t frame) const { return bytes_.data() + offsets_[frame]; }
  size_t size(size_t frame) const { return sizes_[frame]; }

 private:
  std::vector<uint8_t> bytes_;
  std::vector<size_t> offsets_;
  std::vector<size_t> sizes_;
};

}  // namespace callers
