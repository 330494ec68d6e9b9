// CUDA glue of the CIAE box-filtered similarity ops.
#include <ATen/ATen.h>
#include <ATen/DeviceAccelerator.h>
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include "box_similarity/box_similarity_checks.h"
#include "box_similarity/box_similarity_launch.h"

namespace panoptic_ops {
namespace {

struct Prepared {
  at::Tensor embeddings, queries, boxes;
  int64_t batch, dim, height, width, num;
};

// Contiguous inputs with double boxes (what the kernels read), after the checks.
Prepared prepare(const at::Tensor& embeddings, const at::Tensor& queries, const at::Tensor& boxes) {
  return {embeddings.contiguous(), queries.contiguous(), boxes.to(at::kDouble).contiguous(), embeddings.size(0),
          embeddings.size(1), embeddings.size(2), embeddings.size(3), queries.size(1)};
}

at::Tensor similarity_cuda(const at::Tensor& embeddings, const at::Tensor& queries, const at::Tensor& boxes,
                           int64_t stride) {
  const c10::DeviceGuard guard(embeddings.device());
  box_similarity_checks::check_inputs(embeddings, queries, boxes, stride);
  const Prepared p = prepare(embeddings, queries, boxes);
  at::Tensor out = at::empty({p.batch, p.num, p.height, p.width}, embeddings.options());
  cuda::box_similarity(p.embeddings.data_ptr(), p.queries.data_ptr(), p.boxes.data_ptr<double>(),
                       embeddings.scalar_type() == at::kDouble, p.batch, p.dim, p.height, p.width, p.num, stride,
                       out.data_ptr(), at::accelerator::getCurrentStream(embeddings.device().index()).native_handle());
  return out;
}

std::tuple<at::Tensor, at::Tensor> assign_cuda(const at::Tensor& embeddings, const at::Tensor& queries,
                                               const at::Tensor& boxes, int64_t stride) {
  const c10::DeviceGuard guard(embeddings.device());
  box_similarity_checks::check_assign(embeddings, queries, boxes, stride);
  const Prepared p = prepare(embeddings, queries, boxes);
  at::Tensor ids = at::empty({p.batch, p.height, p.width}, embeddings.options().dtype(at::kLong));
  at::Tensor scores = at::empty({p.batch, p.height, p.width}, embeddings.options());
  cuda::box_assign(p.embeddings.data_ptr(), p.queries.data_ptr(), p.boxes.data_ptr<double>(),
                   embeddings.scalar_type() == at::kDouble, p.batch, p.dim, p.height, p.width, p.num, stride,
                   ids.data_ptr<int64_t>(), scores.data_ptr(),
                   at::accelerator::getCurrentStream(embeddings.device().index()).native_handle());
  return {ids, scores};
}

}  // namespace

TORCH_LIBRARY_IMPL(panoptic_ops, CUDA, m) {
  m.impl("box_filtered_similarity", &similarity_cuda);
  m.impl("box_filtered_assign", &assign_cuda);
}

}  // namespace panoptic_ops
