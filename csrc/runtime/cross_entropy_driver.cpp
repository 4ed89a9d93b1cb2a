#include "kernels/cross_entropy_args.hpp"
#include "runtime/reduce.hpp"
#include "runtime/threading.hpp"

namespace pyce {

CrossEntropyResult cross_entropy(CrossEntropyArgs& args) {
    CrossEntropyResult result;
    result.row_loss.assign(static_cast<size_t>(args.rows), 0.0);
    MeanOver over;
    over.rows = args.rows;
    over.target = args.target;
    over.ignore_index = args.ignore_index;
    over.weight = args.weight;
    over.weight_f64 = args.dtype == DType::f64;
    const double divisor = divisor_of(args.reduction, over);

    if (args.want_lse) {
        result.row_lse.assign(static_cast<size_t>(args.rows), 0.0);
        args.row_lse = result.row_lse.data();
    }
    args.row_loss = result.row_loss.data();
    args.threads = num_threads();
    if (args.grad_output) {
        if (args.reduction == Reduction::none)
            args.grad_scale_rows = args.grad_output;
        else
            args.grad_scale = reduced_grad_scale(args.reduction, args.grad_output[0], divisor);
    }
    const KernelTable& table = kernels();
    (args.inner > 1 ? table.cross_entropy_strided : table.cross_entropy)[static_cast<int>(args.dtype)](args);

    if (args.reduction != Reduction::none)
        result.total = reduce_rows(result.row_loss.data(), args.rows, args.reduction, divisor);
    return result;
}

}  // namespace pyce
