#pragma once

#include "transport/message.h"

#include <string>

namespace distgrad::transport {

// The first frames on every connection. The connecting worker sends a hello
// (its rank and the job secret); the accepting worker answers with an accept
// (its own rank) or closes the connection.
enum ControlType : uint16_t {
  kHello = 1,
  kAccept = 2,
  // Sent before a worker closes its connections on shutdown, so that the end
  // of the stream that follows is not mistaken for a crash.
  kGoodbye = 3,
};

Message encodeHello(int rank, const std::string& secret);
Message encodeAccept(int rank);

// Returns the rank a hello announces if its secret matches; throws
// std::runtime_error saying what is wrong otherwise.
int decodeHello(const Message& hello, const std::string& secret, int world_size);

// Returns the rank an accept announces; throws if message is not an accept.
int decodeAccept(const Message& accept);

}  // namespace distgrad::transport
