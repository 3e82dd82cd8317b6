#include "autograd/messages.h"

#include <stdexcept>

namespace distgrad::autograd {

std::vector<c10::IValue> PropagateGradients::toArgs() const {
  std::vector<c10::IValue> tensors(grads.begin(), grads.end());
  return {static_cast<int64_t>(kind), context_id, pass_id, message_id, retain_graph,
          timeout_seconds, c10::ivalue::Tuple::create(std::move(tensors))};
}

PropagateGradients PropagateGradients::fromArgs(const std::vector<c10::IValue>& args) {
  if (args.size() != 7 || !args[0].isInt() || !args[1].isInt() || !args[2].isInt() ||
      !args[3].isInt() || !args[4].isBool() || !args[5].isDouble() || !args[6].isTuple() ||
      args[0].toInt() < kGradients || args[0].toInt() > kJoin) {
    throw std::runtime_error("malformed gradient message");
  }
  PropagateGradients m;
  m.kind = static_cast<Kind>(args[0].toInt());
  m.context_id = args[1].toInt();
  m.pass_id = args[2].toInt();
  m.message_id = args[3].toInt();
  m.retain_graph = args[4].toBool();
  m.timeout_seconds = args[5].toDouble();
  for (const auto& grad : args[6].toTupleRef().elements()) {
    if (!grad.isTensor()) {
      throw std::runtime_error("malformed gradient message");
    }
    m.grads.push_back(grad.toTensor());
  }
  return m;
}

void PassReport::appendTo(c10::List<int64_t>& encoded) const {
  encoded.push_back(worker);
  encoded.push_back(stamp);
  encoded.push_back(static_cast<int64_t>(undecided.size()));
  for (const auto& u : undecided) {
    encoded.push_back(u.peer);
    encoded.push_back(u.message_id);
  }
}

std::vector<PassReport> PassReport::parse(const c10::List<int64_t>& encoded) {
  std::vector<PassReport> reports;
  size_t i = 0;
  auto next = [&]() -> int64_t {
    if (i >= encoded.size()) {
      throw std::runtime_error("malformed backward pass report");
    }
    return encoded.get(i++);
  };
  while (i < encoded.size()) {
    PassReport report;
    report.worker = next();
    report.stamp = next();
    int64_t n = next();
    if (n < 0 || static_cast<size_t>(n) > (encoded.size() - i) / 2) {
      throw std::runtime_error("malformed backward pass report");
    }
    for (int64_t k = 0; k < n; ++k) {
      int64_t peer = next();
      report.undecided.push_back({peer, next()});
    }
    reports.push_back(std::move(report));
  }
  return reports;
}

c10::IValue PassAnswer::toIValue() const {
  if (carried.empty()) {
    return reports;
  }
  std::vector<c10::IValue> messages;
  messages.reserve(carried.size());
  for (const auto& message : carried) {
    messages.emplace_back(c10::ivalue::Tuple::create(message.toArgs()));
  }
  return c10::ivalue::Tuple::create({reports, c10::ivalue::Tuple::create(std::move(messages))});
}

PassAnswer PassAnswer::fromIValue(const c10::IValue& value) {
  PassAnswer answer;
  if (value.isIntList()) {
    answer.reports = value.toIntList();
    return answer;
  }
  if (!value.isTuple() || value.toTupleRef().size() != 2 ||
      !value.toTupleRef().elements()[0].isIntList() ||
      !value.toTupleRef().elements()[1].isTuple()) {
    throw std::runtime_error("malformed answer to a gradient message");
  }
  const auto& fields = value.toTupleRef().elements();
  answer.reports = fields[0].toIntList();
  for (const auto& message : fields[1].toTupleRef().elements()) {
    if (!message.isTuple()) {
      throw std::runtime_error("malformed answer to a gradient message");
    }
    const auto& args = message.toTupleRef().elements();
    answer.carried.push_back(
        PropagateGradients::fromArgs(std::vector<c10::IValue>(args.begin(), args.end())));
  }
  return answer;
}

std::vector<c10::IValue> ReleaseContext::toArgs() const {
  return {context_id};
}

ReleaseContext ReleaseContext::fromArgs(const std::vector<c10::IValue>& args) {
  if (args.size() != 1 || !args[0].isInt()) {
    throw std::runtime_error("malformed context release message");
  }
  return ReleaseContext{args[0].toInt()};
}

}  // namespace distgrad::autograd
