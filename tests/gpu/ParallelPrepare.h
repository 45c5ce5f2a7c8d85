// Computes the CPU side of the GPU test cases (inputs and float64 references)
// on every core while the GPU runs the earlier ones in order.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <functional>
#include <future>
#include <thread>
#include <vector>

template <typename Prepared> class ParallelPrepare {
public:
  ParallelPrepare(std::size_t count, std::function<Prepared(std::size_t)> prepare)
      : promises(count), prepare(std::move(prepare)) {
    for (auto &p : promises) ready.push_back(p.get_future());
    for (unsigned w = 0; w < std::max(1u, std::thread::hardware_concurrency()); ++w)
      pool.emplace_back([this] {
        for (std::size_t i; (i = next++) < promises.size();) {
          try {
            promises[i].set_value(this->prepare(i));
          } catch (...) {
            promises[i].set_exception(std::current_exception());
          }
        }
      });
  }
  ~ParallelPrepare() {
    for (auto &t : pool) t.join();
  }
  // The i-th prepared case (waits for it; rethrows its exception).
  Prepared get(std::size_t i) { return ready[i].get(); }

private:
  std::vector<std::promise<Prepared>> promises;
  std::vector<std::future<Prepared>> ready;
  std::function<Prepared(std::size_t)> prepare;
  std::atomic<std::size_t> next{0};
  std::vector<std::thread> pool;
};
