#include "python/gil.h"

namespace distgrad::python {

namespace {

// A thread state created for a thread that had none, kept until it ends.
struct KeptThreadState {
  PyThreadState* state = nullptr;

  KeptThreadState() {
    if (PyGILState_GetThisThreadState() != nullptr) {
      return;  // a Python thread, or one with a state already
    }
    PyGILState_Ensure();          // creates the state, takes the GIL
    state = PyEval_SaveThread();  // releases the GIL, keeps the state
  }

  ~KeptThreadState() {
    // Python 3.11's name; the interpreter frees what is left at exit.
    if (state == nullptr || !Py_IsInitialized() || _Py_IsFinalizing()) {
      return;
    }
    PyEval_RestoreThread(state);
    PyGILState_Release(PyGILState_UNLOCKED);  // the last count: frees the state and the GIL
  }
};

}  // namespace

RuntimeGil::KeepThreadState::KeepThreadState() {
  thread_local KeptThreadState kept;
  (void)kept;
}

}  // namespace distgrad::python
