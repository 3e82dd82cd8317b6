#pragma once

#include <string>

namespace distgrad {

// Writes one line to stderr, prefixed with "[distgrad <who>]". Used for events
// that must not raise anywhere, such as a peer dropped for a bad handshake.
void logWarning(const std::string& who, const std::string& message);

}  // namespace distgrad
