#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

namespace nudge {

/// A thread of its own for a plugin's blocking calls (a database client),
/// so the event loop never blocks. Jobs run one at a time, in order; each
/// job's result is handed back on the event loop's executor.
///
///     worker_.run([batch] { return db.insert(*batch); },      // worker thread
///                 [done](Status s) { done(std::move(s)); });   // event loop
class BlockingWorker {
 public:
  /// `completion_executor` is where results are delivered (the Context's executor).
  explicit BlockingWorker(boost::asio::any_io_executor completion_executor)
      : completion_executor_(std::move(completion_executor)),
        guard_(boost::asio::make_work_guard(io_)),
        thread_([this] { io_.run(); }) {}

  /// Finishes queued jobs, then joins the thread. Results of jobs that end
  /// after the event loop stopped are dropped.
  ~BlockingWorker() { shutdown(); }

  BlockingWorker(const BlockingWorker&) = delete;
  BlockingWorker& operator=(const BlockingWorker&) = delete;

  /// Queues `work` for the worker thread, then posts `done(result)` to the
  /// completion executor. Callable from any thread.
  template <class Work, class Done>
  void run(Work work, Done done) {
    // The work guard tells the event loop a result is still coming, so it
    // does not run out of work while the job runs.
    boost::asio::post(io_, [work = std::move(work), done = std::move(done),
                            guard = boost::asio::make_work_guard(completion_executor_)]() mutable {
      auto result = work();
      boost::asio::post(guard.get_executor(),
                        [done = std::move(done), result = std::move(result)]() mutable { done(std::move(result)); });
      guard.reset();
    });
  }

  /// Queues `work` whose result nobody waits for (closing a connection).
  template <class Work>
  void run_detached(Work work) {
    boost::asio::post(io_, std::move(work));
  }

  /// Lets queued jobs finish, then joins. Idempotent; not from the worker itself.
  void shutdown() {
    guard_.reset();
    if (thread_.joinable()) thread_.join();
  }

 private:
  boost::asio::any_io_executor completion_executor_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::thread thread_;
};

}  // namespace nudge
