#include "payloads.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

namespace callers {

std::string Payloads::load(const std::string &path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return path + ": " + strerror(errno);
  bytes_.assign(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
  if (file.bad()) return path + ": read error";
  offsets_.clear();
  sizes_.clear();
  size_t at = 0;
  while (at < bytes_.size()) {
    if (bytes_.size() - at < 2) return path + ": truncated length at byte " + std::to_string(at);
    const size_t size = size_t{bytes_[at]} << 8 | bytes_[at + 1];
    if (size == 0 || size > kMaxPayload) {
      return path + ": frame " + std::to_string(offsets_.size()) + " has length " + std::to_string(size) +
             " (1.." + std::to_string(kMaxPayload) + " allowed)";
    }
    if (bytes_.size() - at - 2 < size) return path + ": truncated frame " + std::to_string(offsets_.size());
    offsets_.push_back(at + 2);
    sizes_.push_back(size);
    at += 2 + size;
  }
  if (offsets_.empty()) return path + ": no frames";
  return {};
}

}  // namespace callers
