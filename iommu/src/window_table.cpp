#include "pinless/iommu/window_table.h"

#include <algorithm>

namespace pinless::iommu {

void WindowTable::add_region(uint64_t pages) {
  starts_.emplace_back(pages);
  index_.emplace_back((pages + kChunkPages - 1) / kChunkPages);
}

uint32_t& WindowTable::slot(uint32_t region, uint64_t first) {
  auto& chunk = index_[region][first / kChunkPages];
  if (!chunk) {
    chunk = std::make_unique<uint32_t[]>(kChunkPages);
    std::fill_n(chunk.get(), kChunkPages, kNil);
  }
  return chunk[first % kChunkPages];
}

void WindowTable::unlink(uint32_t id) {
  Window& w = at(id);
  if (w.prev != kNil) at(w.prev).next = w.next; else head_ = w.next;
  if (w.next != kNil) at(w.next).prev = w.prev; else tail_ = w.prev;
  w.prev = w.next = kNil;
}

void WindowTable::push_back(uint32_t id) {
  Window& w = at(id);
  w.prev = tail_;
  w.next = kNil;
  if (tail_ != kNil) at(tail_).next = id; else head_ = id;
  tail_ = id;
}

uint32_t WindowTable::insert(uint32_t region, uint64_t first, uint64_t pages, uint64_t batch) {
  uint32_t id;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
  } else {
    id = slab_used_++;
    if (id / kSlabChunk == slab_.size()) slab_.push_back(std::make_unique<Window[]>(kSlabChunk));
  }
  at(id) = Window{region, first, pages, batch, kNil, kNil};
  push_back(id);
  starts_[region].set(first, 1);
  slot(region, first) = id;
  size_++;
  return id;
}

uint32_t WindowTable::find(uint32_t region, uint64_t first) const {
  const auto& chunk = index_[region][first / kChunkPages];
  return chunk ? chunk[first % kChunkPages] : kNil;
}

uint32_t WindowTable::containing(uint32_t region, uint64_t page) const {
  uint64_t start = starts_[region].prev_set(page);
  if (start == PageBitmap::kNone) return kNil;
  uint32_t id = find(region, start);
  if (id == kNil || page >= at(id).first + at(id).pages) return kNil;
  return id;
}

void WindowTable::touch(uint32_t id, uint64_t batch) {
  at(id).batch = batch;
  if (id == tail_) return;
  unlink(id);
  push_back(id);
}

void WindowTable::erase(uint32_t id) {
  Window& w = at(id);
  unlink(id);
  starts_[w.region].clear(w.first, 1);
  slot(w.region, w.first) = kNil;
  free_.push_back(id);
  size_--;
}

void WindowTable::clear() {
  for (uint32_t id = head_; id != kNil;) {
    uint32_t next = at(id).next;
    starts_[at(id).region].clear(at(id).first, 1);
    id = next;
  }
  for (auto& chunks : index_) {
    for (auto& c : chunks) {
      if (c) std::fill_n(c.get(), kChunkPages, kNil);
    }
  }
  slab_used_ = 0;  // the chunks are kept for reuse
  free_.clear();
  head_ = tail_ = kNil;
  size_ = 0;
}

}  // namespace pinless::iommu
