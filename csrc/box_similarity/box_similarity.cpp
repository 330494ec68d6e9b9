// CIAE box-filtered similarity: S[b, n, y, x] = <E[b, :, y, x], Q[b, n, :]> inside query n's box,
// 0 outside; and the fused per-pixel argmax over queries that never materialises S.
// Dot products accumulate over the D channels in order, one rounding per multiply and add.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <limits>
#include <vector>

#include "box_similarity/box_similarity_checks.h"
#include "box_similarity/box_window.h"

namespace panoptic_ops {
namespace {

struct Window {
  int64_t y0, y1, x0, x1;
};

template <typename B>
std::vector<Window> windows(const at::Tensor& boxes, int64_t height, int64_t width, int64_t stride) {
  const at::Tensor b = boxes.contiguous();
  const B* p = b.data_ptr<B>();
  std::vector<Window> out(b.size(0) * b.size(1));
  for (size_t i = 0; i < out.size(); ++i) {
    const double x1 = static_cast<double>(p[4 * i]), y1 = static_cast<double>(p[4 * i + 1]);
    const double x2 = static_cast<double>(p[4 * i + 2]), y2 = static_cast<double>(p[4 * i + 3]);
    axis_range(y1, y2, height, static_cast<double>(stride), &out[i].y0, &out[i].y1);
    axis_range(x1, x2, width, static_cast<double>(stride), &out[i].x0, &out[i].x1);
  }
  return out;
}

std::vector<Window> box_windows(const at::Tensor& boxes, int64_t height, int64_t width, int64_t stride) {
  std::vector<Window> out;
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "boxes", [&] { out = windows<scalar_t>(boxes, height, width, stride); });
  return out;
}

at::Tensor similarity_cpu(const at::Tensor& embeddings, const at::Tensor& queries, const at::Tensor& boxes,
                          int64_t stride) {
  box_similarity_checks::check_inputs(embeddings, queries, boxes, stride);
  const int64_t batch = embeddings.size(0), dim = embeddings.size(1), height = embeddings.size(2),
                width = embeddings.size(3), num = queries.size(1), plane = height * width;
  at::Tensor out = at::zeros({batch, num, height, width}, embeddings.options());
  if (out.numel() == 0) return out;
  const std::vector<Window> win = box_windows(boxes, height, width, stride);
  const at::Tensor e = embeddings.contiguous(), q = queries.contiguous();
  AT_DISPATCH_FLOATING_TYPES(e.scalar_type(), "box_filtered_similarity", [&] {
    const scalar_t* ep = e.data_ptr<scalar_t>();
    const scalar_t* qp = q.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, batch * num, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bn = begin; bn < end; ++bn) {
        const int64_t b = bn / num;
        const Window& w = win[bn];
        scalar_t* s = op + bn * plane;
        for (int64_t d = 0; d < dim; ++d) {
          const scalar_t qd = qp[bn * dim + d];
          const scalar_t* ed = ep + (b * dim + d) * plane;
          for (int64_t y = w.y0; y < w.y1; ++y)
            for (int64_t x = w.x0; x < w.x1; ++x) s[y * width + x] += ed[y * width + x] * qd;
        }
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> assign_cpu(const at::Tensor& embeddings, const at::Tensor& queries,
                                              const at::Tensor& boxes, int64_t stride) {
  box_similarity_checks::check_assign(embeddings, queries, boxes, stride);
  const int64_t batch = embeddings.size(0), dim = embeddings.size(1), height = embeddings.size(2),
                width = embeddings.size(3), num = queries.size(1), plane = height * width;
  at::Tensor ids = at::empty({batch, height, width}, embeddings.options().dtype(at::kLong));
  at::Tensor scores = at::empty({batch, height, width}, embeddings.options());
  if (ids.numel() == 0) return {ids, scores};
  const std::vector<Window> win = box_windows(boxes, height, width, stride);
  const at::Tensor e = embeddings.contiguous(), q = queries.contiguous();
  AT_DISPATCH_FLOATING_TYPES(e.scalar_type(), "box_filtered_assign", [&] {
    const scalar_t* ep = e.data_ptr<scalar_t>();
    const scalar_t* qp = q.data_ptr<scalar_t>();
    int64_t* idp = ids.data_ptr<int64_t>();
    scalar_t* sp = scores.data_ptr<scalar_t>();
    at::parallel_for(0, batch * height, 1, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> row(width);
      std::vector<scalar_t> best(width);
      std::vector<int64_t> best_id(width);
      std::vector<uint8_t> done(width);  // a NaN similarity wins and ends the search, as in argmax
      for (int64_t by = begin; by < end; ++by) {
        const int64_t b = by / height, y = by % height;
        for (int64_t n = 0; n < num; ++n) {
          const Window& w = win[b * num + n];
          const bool row_inside = y >= w.y0 && y < w.y1;
          const int64_t x0 = row_inside ? w.x0 : 0, x1 = row_inside ? w.x1 : 0;
          std::fill(row.begin(), row.end(), scalar_t(0));
          for (int64_t d = 0; d < dim && x0 < x1; ++d) {
            const scalar_t qd = qp[(b * num + n) * dim + d];
            const scalar_t* ed = ep + (b * dim + d) * plane + y * width;
            for (int64_t x = x0; x < x1; ++x) row[x] += ed[x] * qd;
          }
          for (int64_t x = 0; x < width; ++x) {
            if (n == 0) {
              best[x] = row[x];
              best_id[x] = 0;
              done[x] = std::isnan(row[x]);
            } else if (!done[x] && (row[x] > best[x] || std::isnan(row[x]))) {
              best[x] = row[x];
              best_id[x] = n;
              done[x] = std::isnan(row[x]);
            }
          }
        }
        std::copy(best.begin(), best.end(), sp + by * width);
        std::copy(best_id.begin(), best_id.end(), idp + by * width);
      }
    });
  });
  return {ids, scores};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(panoptic_ops, m) {
  m.def("box_filtered_similarity(Tensor embeddings, Tensor queries, Tensor boxes, int stride) -> Tensor");
  m.def("box_filtered_assign(Tensor embeddings, Tensor queries, Tensor boxes, int stride) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(panoptic_ops, CPU, m) {
  m.impl("box_filtered_similarity", &similarity_cpu);
  m.impl("box_filtered_assign", &assign_cpu);
}

}  // namespace panoptic_ops
