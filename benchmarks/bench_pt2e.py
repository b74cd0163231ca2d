"""qref's time for the int8 ops of a compiled PT2E program vs the oneDNN ops torch.compile calls,
single thread (both asserted bit-exact first). Usage: python benchmarks/bench_pt2e.py"""

import os
import sys
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))


def main() -> None:
    warnings.filterwarnings("ignore")
    import torch

    import qref.pt2e.ops as ops
    from qref.pt2e.program import compile_model
    from test_pt2e import ResNetBlock, _convert

    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    conv = _convert(ResNetBlock(), x)
    prog = compile_model(conv, (x,))
    parsed = [(c, ops.parse_call(c.name, c.args)) for c in prog.calls]
    for c, op in parsed:
        assert torch.equal(ops.run_op(op).contiguous().view(-1), c.output.contiguous().view(-1))
    packet = {n: getattr(torch.ops.onednn, n.split(".")[0]) for n in (c.name for c, _ in parsed)}

    def torch_ops():
        for c, _ in parsed:
            args = [a.clone() if isinstance(a, torch.Tensor) and not a.is_mkldnn and a.dim() == 4
                    and a.dtype == torch.float32 else a for a in c.args]
            getattr(packet[c.name], c.name.split(".")[1])(*args)

    def qref_ops():
        for _, op in parsed:
            ops.run_op(op)

    def t(fn, n=20):
        fn()
        s = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - s) / n * 1e3

    tt, tq = t(torch_ops), t(qref_ops)
    print(f"| ResNetBlock 4x3x32x32, {len(parsed)} int8 ops | 1 | {tt:.3f} | {tq:.3f} | {tt / tq:.2f} |")


if __name__ == "__main__":
    main()
