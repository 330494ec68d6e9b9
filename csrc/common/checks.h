// Argument checks of every op, included by the CPU glue and the CUDA glue alike, so that the one
// message reaches every caller (the Python wrappers in panoptic_ops, direct torch.ops callers,
// either device). Shapes and values raise ValueError, dtypes TypeError (TORCH_CHECK_VALUE /
// TORCH_CHECK_TYPE), as torchvision's Python wrappers do. The schema already fixes the argument
// kinds (Tensor, int, float); these check what it cannot express.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <sstream>
#include <string>
#include <utility>

namespace panoptic_ops::checks {

// One size of an expected shape that may be anything (printed "*").
inline constexpr int64_t kAny = -1;

// A dtype as torch names it in Python ("float32", not c10's "Float").
inline const char* dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return "float32";
    case at::kDouble:
      return "float64";
    case at::kHalf:
      return "float16";
    case at::kBFloat16:
      return "bfloat16";
    case at::kLong:
      return "int64";
    case at::kInt:
      return "int32";
    case at::kShort:
      return "int16";
    case at::kChar:
      return "int8";
    case at::kByte:
      return "uint8";
    case at::kBool:
      return "bool";
    case at::ScalarType::UInt16:
      return "uint16";
    case at::ScalarType::UInt32:
      return "uint32";
    case at::ScalarType::UInt64:
      return "uint64";
    case at::kComplexFloat:
      return "complex64";
    case at::kComplexDouble:
      return "complex128";
    default:
      return c10::toString(t);
  }
}

inline std::string shape_string(c10::IntArrayRef shape) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out << ", ";
    if (shape[i] == kAny)
      out << '*';
    else
      out << shape[i];
  }
  out << ']';
  return out.str();
}

// `name` has exactly `shape` (kAny entries match any size).
inline void check_shape(const at::Tensor& t, const char* name, std::initializer_list<int64_t> shape) {
  bool ok = t.dim() == static_cast<int64_t>(shape.size());
  int64_t d = 0;
  for (const int64_t s : shape) {
    if (!ok) break;
    ok = s == kAny || t.size(d) == s;
    ++d;
  }
  TORCH_CHECK_VALUE(ok, name, " must have shape ", shape_string(shape), ", got ", shape_string(t.sizes()));
}

inline void check_dims(const at::Tensor& t, const char* name, int64_t dims) {
  TORCH_CHECK_VALUE(t.dim() == dims, name, " must have ", dims, " dimensions, got shape ", shape_string(t.sizes()));
}

inline void check_dtype(const at::Tensor& t, const char* name, std::initializer_list<at::ScalarType> allowed) {
  for (const at::ScalarType a : allowed)
    if (t.scalar_type() == a) return;
  std::ostringstream names;
  for (const at::ScalarType a : allowed) names << (names.tellp() > 0 ? ", " : "") << dtype_name(a);
  TORCH_CHECK_TYPE(false, name, " must have dtype ", names.str(), "; got ", dtype_name(t.scalar_type()));
}

inline void check_float(const at::Tensor& t, const char* name) { check_dtype(t, name, {at::kFloat, at::kDouble}); }

// The integer dtypes the ops read labels and ids from.
inline void check_integer(const at::Tensor& t, const char* name) {
  check_dtype(t, name, {at::kLong, at::kInt, at::kShort, at::kChar, at::kByte});
}

// Binary masks: bool or an integer dtype (> 0 is inside).
inline void check_mask(const at::Tensor& t, const char* name) {
  check_dtype(t, name, {at::kBool, at::kLong, at::kInt, at::kShort, at::kChar, at::kByte});
}

// All the given tensors live on one device (an op dispatched to CUDA must not read host memory).
inline void check_same_device(std::initializer_list<std::pair<const char*, const at::Tensor*>> tensors) {
  const at::Tensor* first = nullptr;
  bool same = true;
  for (const auto& [name, t] : tensors) {
    if (t == nullptr) continue;
    if (first == nullptr)
      first = t;
    else
      same = same && t->device() == first->device();
  }
  if (same) return;
  std::ostringstream listing;
  for (const auto& [name, t] : tensors)
    if (t != nullptr) listing << (listing.tellp() > 0 ? ", " : "") << name << " on " << t->device();
  TORCH_CHECK_VALUE(false, "all tensors must be on one device, got ", listing.str());
}

inline const at::Tensor* optional_ptr(const std::optional<at::Tensor>& t) { return t.has_value() ? &*t : nullptr; }

}  // namespace panoptic_ops::checks
