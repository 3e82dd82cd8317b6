#include "autograd/current_context.h"

#include "common/torch_private.h"

#include <c10/util/Exception.h>

#include <memory>
#include <string_view>

namespace distgrad::autograd {

namespace {

// The slot is identified by the address of this string.
constexpr std::string_view kSlotName = "distgrad.autograd.current_context";
constexpr c10::DebugInfoKind kCurrentContextSlot{&kSlotName};

class CurrentContext : public c10::DebugInfoBase {
 public:
  explicit CurrentContext(int64_t id) : id(id) {}
  const int64_t id;
};

}  // namespace

int64_t currentContextId() {
  auto* info = c10::ThreadLocalDebugInfo::get(kCurrentContextSlot);
  return info ? static_cast<CurrentContext*>(info)->id : kNoContext;
}

void pushCurrentContext(int64_t context_id) {
  torch_private::pushDebugInfo(kCurrentContextSlot, std::make_shared<CurrentContext>(context_id));
}

void popCurrentContext() {
  torch_private::popDebugInfo(kCurrentContextSlot);
}

CurrentContextGuard::CurrentContextGuard(int64_t context_id) {
  pushCurrentContext(context_id);
}

CurrentContextGuard::~CurrentContextGuard() {
  popCurrentContext();
}

}  // namespace distgrad::autograd
