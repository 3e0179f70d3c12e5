// Preloaded into the unit tests of a TSan build (cmake/NudgeSanitize.cmake):
// glibc's C11 threads (thrd_create, mtx_lock, cnd_wait, ...) call the pthread
// functions from inside libc, where TSan's interceptors never see them. A
// thread librdkafka starts with thrd_create is then unknown to TSan, which
// crashes on that thread's first allocation (google/sanitizers#1195), and
// librdkafka's locks would be invisible to it. Each function below does what
// glibc's does, but through the exported pthread functions, which TSan
// intercepts. Built without instrumentation, so a process without TSan that
// inherits LD_PRELOAD (cmake, sh) just gets libc's pthread functions.
//
// Only what Debian's librdkafka imports: nm -D librdkafka.so.1 | grep -E ' U (thrd|mtx|cnd|call_once)'.
// The layouts match glibc's: thrd_t is a pthread_t, mtx_t a pthread_mutex_t,
// cnd_t a pthread_cond_t, once_flag a pthread_once_t.
#include <pthread.h>

#include <cerrno>
#include <cstdint>
#include <ctime>
#include <new>

namespace {

// <threads.h>'s values (glibc), not included: it is a C header.
enum { thrd_success = 0, thrd_busy = 1, thrd_error = 2, thrd_nomem = 3, thrd_timedout = 4 };
enum { mtx_recursive = 1 };

int from_errno(int e) {
  switch (e) {
    case 0:
      return thrd_success;
    case EBUSY:
      return thrd_busy;
    case ENOMEM:
      return thrd_nomem;
    case ETIMEDOUT:
      return thrd_timedout;
    default:
      return thrd_error;
  }
}

struct Start {
  int (*func)(void*);
  void* arg;
};

void* trampoline(void* p) {
  const Start start = *static_cast<Start*>(p);
  delete static_cast<Start*>(p);
  return reinterpret_cast<void*>(static_cast<std::intptr_t>(start.func(start.arg)));
}

}  // namespace

extern "C" {

int thrd_create(pthread_t* thread, int (*func)(void*), void* arg) {
  auto* start = new (std::nothrow) Start{func, arg};
  if (!start) return thrd_nomem;
  const int e = pthread_create(thread, nullptr, trampoline, start);
  if (e != 0) delete start;
  return from_errno(e);
}

int thrd_join(pthread_t thread, int* result) {
  void* value = nullptr;
  const int e = pthread_join(thread, &value);
  if (e == 0 && result) *result = static_cast<int>(reinterpret_cast<std::intptr_t>(value));
  return from_errno(e);
}

pthread_t thrd_current(void) { return pthread_self(); }

int mtx_init(pthread_mutex_t* mutex, int type) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  if (type & mtx_recursive) pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
  const int e = pthread_mutex_init(mutex, &attr);
  pthread_mutexattr_destroy(&attr);
  return from_errno(e);
}
int mtx_lock(pthread_mutex_t* mutex) { return from_errno(pthread_mutex_lock(mutex)); }
int mtx_unlock(pthread_mutex_t* mutex) { return from_errno(pthread_mutex_unlock(mutex)); }
void mtx_destroy(pthread_mutex_t* mutex) { pthread_mutex_destroy(mutex); }

int cnd_init(pthread_cond_t* cond) { return from_errno(pthread_cond_init(cond, nullptr)); }
int cnd_signal(pthread_cond_t* cond) { return from_errno(pthread_cond_signal(cond)); }
int cnd_broadcast(pthread_cond_t* cond) { return from_errno(pthread_cond_broadcast(cond)); }
int cnd_wait(pthread_cond_t* cond, pthread_mutex_t* mutex) { return from_errno(pthread_cond_wait(cond, mutex)); }
int cnd_timedwait(pthread_cond_t* cond, pthread_mutex_t* mutex, const struct timespec* until) {
  return from_errno(pthread_cond_timedwait(cond, mutex, until));
}
void cnd_destroy(pthread_cond_t* cond) { pthread_cond_destroy(cond); }

void call_once(pthread_once_t* flag, void (*func)(void)) { pthread_once(flag, func); }

}  // extern "C"
