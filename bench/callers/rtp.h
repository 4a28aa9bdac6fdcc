// RTP header layout (RFC 3550).
#pragma once

#include <cstddef>
#include <cstdint>

#include "big_endian.h"

namespace callers {

constexpr size_t kRtpHeaderSize = 12;

// The header's size with CSRCs and the extension, or 0 if the packet is not
// RTP version 2 or its header does not fit in `size`.
inline size_t rtp_header_size(const uint8_t *packet, size_t size) {
  if (size < kRtpHeaderSize || (packet[0] >> 6) != 2) return 0;
  size_t header = kRtpHeaderSize + 4 * (packet[0] & 0x0f);
  if (packet[0] & 0x10) {
    if (size < header + 4) return 0;
    header += 4 + 4 * size_t{read16(packet + header + 2)};
  }
  return header <= size ? header : 0;
}

}  // namespace callers
