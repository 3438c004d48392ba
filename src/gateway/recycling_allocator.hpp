// recycling_allocator: a standard allocator for the small blocks of HTTP header fields, which Beast
// allocates one per header line of every request and response the gateway parses. Freed blocks go
// to a free list of their size class on the freeing thread and are handed out again from there, so a
// worker thread's steady traffic reuses the same few hundred blocks. glibc's tcache keeps only seven
// blocks per size, fewer than a worker with dozens of requests in flight frees, and the rest of
// free()/malloc() cost ~100 instructions a call (callgrind). Blocks over 512 bytes, and past 4096
// cached blocks per class, go to operator new/delete. Each thread's cache is released when the thread
// ends; memory freed on another thread than it was taken on simply joins that thread's cache.
#pragma once

#include <cstddef>
#include <new>

namespace agifarm::gateway {

namespace detail {

class block_cache {
 public:
  static constexpr std::size_t k_granule = 32;
  static constexpr std::size_t k_classes = 16;  // blocks up to 512 bytes
  static constexpr std::size_t k_max_cached = 4096;

  static void* take(std::size_t bytes) {
    const std::size_t c = size_class(bytes);
    state& s = local();
    if (c >= k_classes || s.gone) return ::operator new(bytes);
    list& l = s.lists[c];
    if (node* n = l.head) {
      l.head = n->next;
      --l.count;
      return n;
    }
    return ::operator new((c + 1) * k_granule);
  }

  static void give(void* p, std::size_t bytes) noexcept {
    const std::size_t c = size_class(bytes);
    state& s = local();
    if (c >= k_classes || s.gone || s.lists[c].count >= k_max_cached) {
      ::operator delete(p);
      return;
    }
    s.owner_armed();  // this thread caches a block: arrange for its cache to be freed when it ends
    list& l = s.lists[c];
    l.head = new (p) node{l.head};
    ++l.count;
  }

 private:
  struct node {
    node* next;
  };
  struct list {
    node* head = nullptr;
    std::size_t count = 0;
  };
  // Trivially destructible, so that it can still be read (gone == true) after the thread's cleanup.
  struct state {
    list lists[k_classes];
    bool gone = false;
    bool armed = false;
    void owner_armed();
  };
  struct releaser {
    ~releaser() {
      state& s = local();
      for (auto& l : s.lists) {
        while (node* n = l.head) {
          l.head = n->next;
          ::operator delete(n);
        }
        l.count = 0;
      }
      s.gone = true;
    }
  };
  static std::size_t size_class(std::size_t bytes) { return bytes == 0 ? 0 : (bytes - 1) / k_granule; }
  static state& local() {
    thread_local state s;
    return s;
  }
};

inline void block_cache::state::owner_armed() {
  if (armed) return;
  armed = true;
  thread_local releaser r;  // constructed now; destroyed at thread exit
  (void)r;
}

}  // namespace detail

template <class T>
struct recycling_allocator {
  using value_type = T;
  recycling_allocator() noexcept = default;
  template <class U>
  recycling_allocator(const recycling_allocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(detail::block_cache::take(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) noexcept { detail::block_cache::give(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const recycling_allocator<U>&) const noexcept {
    return true;
  }
};

}  // namespace agifarm::gateway
