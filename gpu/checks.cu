// Refuse before launch: the checks every entry point of dplr::gpu runs before it launches anything.
#include <cmath>
#include <sstream>

#include "gpu/common.cuh"

namespace dplr::gpu {

const char* elem_type_name(ElemType t) {
  switch (t) {
    case ElemType::F32: return "fp32";
    case ElemType::F16: return "fp16";
    default: return "bf16";
  }
}
std::size_t elem_size(ElemType t) { return t == ElemType::F32 ? 4 : 2; }

const char* variant_name(AVariant v) {
  switch (v) {
    case AVariant::Default: return "default";
    case AVariant::Factored: return "factored";
    case AVariant::Direct: return "direct";
  }
  return "unknown";
}
const char* variant_name(HOVariant v) {
  switch (v) {
    case HOVariant::Default: return "default";
    case HOVariant::TensorCores: return "tensor-cores";
    case HOVariant::Fma2: return "fma2";
    case HOVariant::Fma1: return "fma1";
  }
  return "unknown";
}

const char* variant_name(BwdKernel v) {
  switch (v) {
    case BwdKernel::Default: return "default";
    case BwdKernel::TensorCores: return "tensor-cores";
    case BwdKernel::Fma: return "fma";
  }
  return "unknown";
}

const char* output_mode_name(OutputMode m) {
  switch (m) {
    case OutputMode::Rounded: return "rounded";
    case OutputMode::Fp32: return "fp32";
  }
  return "unknown";
}

const char* planted_defect_name(PlantedDefect d) {
  switch (d) {
    case PlantedDefect::None: return "none";
    case PlantedDefect::HeadStride: return "head-stride";
    case PlantedDefect::SequenceStart: return "sequence-start";
    case PlantedDefect::DropLastChunk: return "drop-last-chunk";
    case PlantedDefect::MissingBarrier: return "missing-barrier";
    case PlantedDefect::Bf16State: return "bf16-state";
    case PlantedDefect::FactoredDecay: return "factored-decay";
    case PlantedDefect::BwdHeadOffset: return "bwd-head-offset";
    case PlantedDefect::BwdStateBf16: return "bwd-state-bf16";
    case PlantedDefect::BwdDgkExclusive: return "bwd-dgk-exclusive";
    case PlantedDefect::RecurrentBwdStateBf16: return "recurrent-bwd-state-bf16";
  }
  return "unknown";
}
bool planted_defects_built() { return detail::kPlantedBuild; }

float ForwardInputs::resolved_scale() const {
  return scale < 0.0f ? static_cast<float>(1.0 / std::sqrt(static_cast<double>(K))) : scale;
}

void detail::refuse(const std::string& what) { throw Unsupported("dplr::gpu: " + what); }
using detail::refuse;

void check_inputs(const ForwardInputs& in) {
  std::ostringstream shape;
  shape << "B=" << in.B << " T=" << in.T << " H=" << in.H << " K=" << in.K << " V=" << in.V;
  if (in.B < 1 || in.T < 1 || in.H < 1) refuse("B, T and H must be >= 1 (" + shape.str() + ")");
  if (in.K < 1 || in.K > kMaxHeadDim || in.V < 1 || in.V > kMaxHeadDim)
    refuse("K and V must be in [1, 128] (" + shape.str() + ")");
  if (in.B * in.T * in.H * std::max(in.K, in.V) >= (std::int64_t(1) << 40)) refuse("tensor too large (" + shape.str() + ")");
  if (!in.q || !in.k || !in.v || !in.a || !in.b || !in.gk) refuse("q, k, v, a, b and gk must all be device pointers");
  if (in.gk_dtype != in.dtype && in.gk_dtype != ElemType::F32)
    refuse(std::string("gk must have the inputs' dtype or fp32 (inputs ") + elem_type_name(in.dtype) + ", gk " +
           elem_type_name(in.gk_dtype) + ")");
  if (in.cu_seqlens) {
    if (in.B != 1) refuse("cu_seqlens needs B == 1 (" + shape.str() + ")");
    if (in.num_sequences < 1) refuse("cu_seqlens needs num_sequences >= 1");
  }
  if (!(in.scale < 0.0f) && !std::isfinite(in.scale)) refuse("scale must be finite");
  if (std::string(variant_name(in.variant.a)) == "unknown")
    refuse("variant.a must be AVariant::Default, Factored or Direct (got " +
           std::to_string(static_cast<int>(in.variant.a)) + ")");
  if (in.planted != PlantedDefect::None && !detail::kPlantedBuild)
    refuse(std::string("planted defect ") + planted_defect_name(in.planted) +
           " asked of a build without planted defects (configure with -DDPLR_PLANT_DEFECTS=ON)");
  if (std::string(planted_defect_name(in.planted)) == "unknown")
    refuse("planted must be a PlantedDefect (got " + std::to_string(static_cast<int>(in.planted)) + ")");
  if (std::string(output_mode_name(in.output)) == "unknown")
    refuse("output must be OutputMode::Rounded or Fp32 (got " + std::to_string(static_cast<int>(in.output)) + ")");
  if (std::string(variant_name(in.variant.ho)) == "unknown")
    refuse("variant.ho must be HOVariant::Default, TensorCores, Fma2 or Fma1 (got " +
           std::to_string(static_cast<int>(in.variant.ho)) + ")");
}

namespace detail {
bool use_tensor_cores(BwdKernel choice, bool supported, const char* stage) {
  if (choice == BwdKernel::TensorCores && !supported)
    refuse(std::string("the tensor-core kernel of ") + stage +
           " does not take this request (BackwardVariant asked TensorCores; see " + stage +
           "_tensor_cores_supported)");
  return choice == BwdKernel::TensorCores || (choice == BwdKernel::Default && supported);
}

void throw_cuda(cudaError_t err, const char* what, const char* file, int line) {
  std::ostringstream os;
  os << "dplr::gpu: CUDA error " << cudaGetErrorName(err) << " (" << cudaGetErrorString(err) << ") in " << what
     << " at " << file << ":" << line;
  throw CudaError(os.str());
}
}  // namespace detail

}  // namespace dplr::gpu
