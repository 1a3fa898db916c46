"""w5-lstm: the public probe calls and checks.

Cells and sequence models whose parameter layout the template fixes (the layout of
torch.nn.LSTMCell / GRUCell / LSTM) are loaded with the judge's weights and compared exactly,
gradients included, with the reference run on the same weights and inputs. Models whose design is
the student's (the forecaster's head, the attention layer, the VAE) are checked by properties:
shapes, ranges, rows that do not mix across the batch, inputs that are used. Forecasting skill is
measured by the judge itself: the student's trained model (the object `FORECASTER` the notebook
leaves) forecasts held-out windows taken from the last part of the series, and the judge compares
its error with the persistence baseline's on the same windows.

Inputs are drawn from the run's seed with a private generator; sizes are chosen so that a transposed
weight or a swapped axis cannot pass by luck (input size != hidden size != batch size).
"""

from __future__ import annotations

import functools

import tempfile
from pathlib import Path

import numpy as np
import torch

from grader.assignments import AssignmentSpec
from grader.i18n import msg
from grader.judge import (CheckContext, all_of, CheckDef, Verdict, artifacts, call_problem, compare_tensors, module_check,
                          output_check)
from grader.judge.properties import Output, property_check, tensor_problem
from grader.judge.quality import quality_checks
from grader.judge.requirements import Forbidden
from grader.probe import ArtifactSpec, ProbeCall
from grader.rubric.models import Tolerance

# What the template fixes (the notebook's constants): the judge's windows use the same.
WINDOW, HORIZON, TRAIN_FRACTION = 24, 6, 0.8
MAX_HELD_OUT_WINDOWS = 4096    # more than this: a seeded draw of that many (the full profile's long series)

I, H, B, T = 5, 7, 4, 9          # cell/sequence sizes: all different, so a transposed layout cannot pass
FP32 = Tolerance(atol=1e-5, rtol=1e-4)
# A forecaster passes when its mean absolute error is below this share of persistence's.
SKILL_THRESHOLD = {"smoke": 1.0, "full": 0.95}


def _uniform(g: torch.Generator, *shape: int, bound: float) -> torch.Tensor:
    return (torch.rand(*shape, generator=g) * 2.0 - 1.0) * bound


def _cell_weights(g: torch.Generator, prefix: str, gates: int, n_in: int, n_hidden: int) -> dict[str, torch.Tensor]:
    # Larger than torch's init (1/sqrt(H)), so the gates are not all near 0.5 and an error shows.
    return {f"{prefix}_w_ih": _uniform(g, gates * n_hidden, n_in, bound=0.8),
            f"{prefix}_w_hh": _uniform(g, gates * n_hidden, n_hidden, bound=0.8),
            f"{prefix}_b_ih": _uniform(g, gates * n_hidden, bound=0.8),
            f"{prefix}_b_hh": _uniform(g, gates * n_hidden, bound=0.8)}


def _state(prefix: str, module_prefix: str = "") -> dict[str, str]:
    return {f"{module_prefix}{p}": f"{prefix}_{k}" for p, k in
            (("weight_ih", "w_ih"), ("weight_hh", "w_hh"), ("bias_ih", "b_ih"), ("bias_hh", "b_hh"))}


# --- the held-out windows: from the last part of the series ---------------------------------------

def held_out_windows(series: np.ndarray, seed: int, *, window: int = WINDOW, horizon: int = HORIZON,
                     train_fraction: float = TRAIN_FRACTION, limit: int = MAX_HELD_OUT_WINDOWS
                     ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(inputs (N, window), targets (N, horizon), how many windows there are in all), float32:
    every window whose forecast targets lie in the held-out part (the series after its first
    `train_fraction`); the inputs may reach back into the training part. At most `limit` windows,
    drawn with the seed when there are more."""
    n = len(series)
    split = int(n * train_fraction)
    starts = np.arange(max(split, window), n - horizon + 1)
    total = len(starts)
    if len(starts) > limit:
        picked = np.random.default_rng(seed).choice(len(starts), size=limit, replace=False)
        starts = starts[np.sort(picked)]
    inputs = np.stack([series[s - window:s] for s in starts]) if len(starts) else np.zeros((0, window))
    targets = np.stack([series[s:s + horizon] for s in starts]) if len(starts) else np.zeros((0, horizon))
    return torch.tensor(inputs, dtype=torch.float32), torch.tensor(targets, dtype=torch.float32), total


def _series(data_dir: Path | None) -> np.ndarray:
    from grader.data import make_series_smoke, read_series

    if data_dir is not None:
        return read_series(Path(data_dir))
    # `grade expected` (no run, no DATA_DIR): the smoke data, made here; no stored output depends on it.
    with tempfile.TemporaryDirectory(prefix="w5-lstm-data-") as folder:
        make_series_smoke(Path(folder))
        return read_series(Path(folder))


def make_inputs(seed: int, data_dir: Path | None = None) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    inputs: dict[str, torch.Tensor] = {}
    inputs.update(_cell_weights(g, "lstm", 4, I, H))
    inputs.update(_cell_weights(g, "fw", 4, I, H))
    inputs.update(_cell_weights(g, "bw", 4, I, H))
    inputs.update(_cell_weights(g, "gru", 3, I, H))
    inputs.update({
        "x": randn(B, I), "h0": randn(B, H, scale=0.5), "c0": randn(B, H),
        "w_h": randn(B, H), "w_c": randn(B, H),        # the loss sum(h * w_h + c * w_c): every entry matters
        "xs": randn(3, T, I), "hs0": randn(1, 3, H, scale=0.5), "cs0": randn(1, 3, H),
        "bi_xs": randn(2, T + 2, I), "w_out": randn(2, T + 2, 2 * H),
        "w_gru": randn(B, H),
    })
    # Gradients to clip: three tensors of different shapes and norms; their global norm is well above
    # the bound in "big" (about 3; per-tensor clipping gives other values) and below it in "small".
    big = [randn(4, 3, scale=0.6), randn(5, scale=0.6), randn(2, 2, 2, scale=0.6)]
    inputs.update({f"g{k}": t for k, t in enumerate(big)})
    inputs.update({f"s{k}": t * 0.05 for k, t in enumerate(big)})
    # Forecaster property calls: row 2 of the changed batch differs, nothing else.
    windows = randn(5, WINDOW, 1)
    changed = windows.clone()
    changed[2] += 1.0
    short = randn(3, 10, 1)
    inputs.update({"fc_x": windows, "fc_x_changed": changed, "fc_short": short})
    vae_x = randn(5, 12, 1)
    vae_changed = vae_x.clone()
    vae_changed[2] += 1.0
    inputs.update({"vae_x": vae_x, "vae_x_changed": vae_changed,
                   "vae_recon": randn(4, 11, 2), "vae_target": randn(4, 11, 2),
                   "vae_mu": randn(4, 3), "vae_logvar": randn(4, 3, scale=0.5)})
    held_in, held_out, total = held_out_windows(_series(data_dir), seed)
    inputs.update({"held_windows": held_in, "held_targets": held_out, "held_total": torch.tensor(total)})
    return inputs


LSTM_STATE = _state("lstm")
BI_STATE = {**_state("fw", "cell."), **_state("bw", "cell_reverse.")}
SEQ_STATE = _state("lstm", "cell.")

CALLS = [
    ProbeCall("cell", "LSTMCell", ("x", "h0", "c0"), kind="module", init_kwargs={"input_size": I, "hidden_size": H},
              state=LSTM_STATE, backward={"weights": {"0": "w_h", "1": "w_c"}}),
    ProbeCall("gates", "LSTMCell", ("x", "h0"), kind="module", init_kwargs={"input_size": I, "hidden_size": H},
              state=LSTM_STATE, method="gate_activations"),
    ProbeCall("seq", "LSTM", ("xs", "hs0", "cs0"), kind="module", init_kwargs={"input_size": I, "hidden_size": H},
              state=SEQ_STATE),
    ProbeCall("bidir", "LSTM", ("bi_xs",), kind="module",
              init_kwargs={"input_size": I, "hidden_size": H, "bidirectional": True},
              state=BI_STATE, backward={"weights": {"0": "w_out"}}),
    ProbeCall("clip_big", "clip_gradients", ("g0", "g1", "g2"), kwargs={"max_norm": 1.0}),
    ProbeCall("clip_small", "clip_gradients", ("s0", "s1", "s2"), kwargs={"max_norm": 1.0}),
    ProbeCall("multistep", "LSTMForecaster", ("fc_x",), kind="module",
              init_kwargs={"input_size": 1, "hidden_size": 8, "horizon": HORIZON},
              perturb=({"args": ("fc_x_changed",)},)),
    ProbeCall("multistep_short", "LSTMForecaster", ("fc_short",), kind="module",
              init_kwargs={"input_size": 1, "hidden_size": 8, "horizon": 3, "bidirectional": True}),
    ProbeCall("forecast", "FORECASTER", ("held_windows",), kind="object"),
    # bonus
    ProbeCall("gru", "GRUCell", ("x", "h0"), kind="module", init_kwargs={"input_size": I, "hidden_size": H},
              state=_state("gru"), backward={"weights": {"0": "w_gru"}}),
    ProbeCall("attention", "AttentionLSTM", ("fc_x",), kind="module",
              init_kwargs={"input_size": 1, "hidden_size": 8, "horizon": HORIZON},
              perturb=({"args": ("fc_x_changed",)},)),
    ProbeCall("vae", "LSTMVAE", ("vae_x",), kind="module",
              init_kwargs={"input_size": 1, "hidden_size": 8, "latent_size": 4},
              perturb=({"args": ("vae_x_changed",)},)),
    ProbeCall("vae_generate", "LSTMVAE", (), kind="module", method="generate",
              init_kwargs={"input_size": 1, "hidden_size": 8, "latent_size": 4}, kwargs={"n": 3, "steps": 7}),
    ProbeCall("vae_loss", "vae_loss", ("vae_recon", "vae_target", "vae_mu", "vae_logvar")),
]


# --- implementation checks -------------------------------------------------------------------------

_all = functools.partial(all_of, report="first")  # the first part's message: the main case


GATES = (("i", "w5l_input_gate", 0.0, 1.0), ("f", "w5l_forget_gate", 0.0, 1.0),
         ("g", "w5l_cell_candidate", -1.0, 1.0), ("o", "w5l_output_gate", 0.0, 1.0))


def _gates(ctx: CheckContext) -> Verdict:
    """The four activations: in their ranges first (a squashing error says which gate), then equal to
    the reference's with the same weights (the order i, f, g, o)."""
    outcome = ctx.call("gates")
    if outcome.status == "state":
        return Verdict("fail", msg("check.module_state", function="LSTMCell",
                                   problems="; ".join(outcome.problems[:4]) or outcome.message))
    problem = call_problem(outcome, "LSTMCell.gate_activations", ctx.probe)
    if problem:
        return problem
    if len(outcome.outputs) != 4:
        return Verdict("fail", msg("check.n_outputs", function="LSTMCell.gate_activations",
                                   count=len(outcome.outputs), expected=4))
    for index, (_, name, low, high) in enumerate(GATES):
        message = tensor_problem(outcome.outputs[index], Output(index, name, (B, H), low, high), "LSTMCell")
        if message:
            return Verdict("fail", message)
    if ctx.expected is None or "gates" not in ctx.expected:
        return Verdict("pending", msg("check.pending_no_reference"))
    tol = ctx.tolerance or FP32
    for index, (_, name, _, _) in enumerate(GATES):
        expected = ctx.expected["gates"][index]
        message = compare_tensors(outcome.outputs[index], expected, tol,
                                  msg("compare.what", name=msg(f"name.{name}"), function="LSTMCell"))
        if message:
            # The picture: the student's (B, H) activations beside the reference's.
            from grader.report.figures import slice_2d

            return Verdict("fail", message, figure=(slice_2d(outcome.outputs[index]), slice_2d(expected)))
    return Verdict("pass", msg("w5l.gates_ok"))


def _clip(call_id: str, over: bool) -> CheckDef:
    """The total norm and the clipped gradients against the reference; `over`: the gradients' norm
    is above max_norm (the result must be bounded by it), else below (nothing may change)."""

    def check(ctx: CheckContext) -> Verdict:
        outcome = ctx.call(call_id)
        problem = call_problem(outcome, "clip_gradients", ctx.probe)
        if problem:
            return problem
        if ctx.expected is None or call_id not in ctx.expected:
            return Verdict("pending", msg("check.pending_no_reference"))
        expected = ctx.expected[call_id]
        if len(outcome.outputs) != len(expected):
            return Verdict("fail", msg("check.n_outputs", function="clip_gradients", count=len(outcome.outputs),
                                       expected=len(expected)))
        tol = ctx.tolerance or FP32
        total = outcome.outputs[0]
        message = compare_tensors(total.reshape(()) if total is not None and total.numel() == 1 else total,
                                  expected[0], tol, msg("compare.what", name=msg("name.w5l_total_norm"),
                                                        function="clip_gradients"))
        if message:
            return Verdict("fail", message)
        clipped = outcome.outputs[1:]
        if all(t is not None and t.is_floating_point() for t in clipped):
            after = float(torch.sqrt(sum((t.double() ** 2).sum() for t in clipped)))
            if over and after > 1.0 + 1e-4:
                return Verdict("fail", msg("w5l.clip_not_bounded", norm=f"{after:.4g}", max_norm="1"))
            before = float(expected[0])
            if not over and abs(after - before) > 1e-4 * max(1.0, before):
                return Verdict("fail", msg("w5l.clip_changed_small", norm=f"{before:.4g}", after=f"{after:.4g}",
                                           max_norm="1"))
        for k in range(1, len(expected)):
            message = compare_tensors(outcome.outputs[k], expected[k], tol,
                                      msg("w5l.clipped_grad", index=k - 1))
            if message:
                return Verdict("fail", message)
        return Verdict("pass", msg("w5l.clip_ok", norm=f"{float(expected[0]):.4g}"))

    return CheckDef(check, function="clip_gradients", needs_reference=True)


def _forecast_outputs(horizon: int, batch: int) -> list[Output]:
    return [Output(0, "w5l_forecast", (batch, horizon))]


# --- forecasting skill: measured by the judge on held-out windows ---------------------------------

def forecast_errors(ctx: CheckContext) -> tuple[dict | None, Verdict | None]:
    """({"model": MAE, "persistence": MAE, "rmse_model", "rmse_persistence", "windows"}, None), or
    (None, the verdict saying why the forecasts cannot be judged)."""
    windows, targets = ctx.inputs.get("held_windows"), ctx.inputs.get("held_targets")
    if windows is None or targets is None or len(windows) == 0:
        return None, Verdict("error", msg("w5l.no_held_out", window=WINDOW, horizon=HORIZON))
    outcome = ctx.call("forecast")
    if outcome.status == "missing":
        return None, Verdict("fail", msg("w5l.forecaster_missing"))
    problem = call_problem(outcome, "FORECASTER", ctx.probe)
    if problem:
        return None, problem
    prediction = outcome.outputs[0] if outcome.outputs else None
    if prediction is None and outcome.types:
        return None, Verdict("fail", msg("check.not_a_tensor", what=msg("compare.what", name=msg("name.w5l_forecast"),
                                                                         function="FORECASTER"),
                                         type=outcome.types[0]))
    message = tensor_problem(prediction, Output(0, "w5l_forecast", tuple(targets.shape)), "FORECASTER")
    if message:
        return None, Verdict("fail", message)
    prediction, targets, windows = prediction.double(), targets.double(), windows.double()
    persistence = windows[:, -1:].expand_as(targets)
    return {"model": float((prediction - targets).abs().mean()),
            "persistence": float((persistence - targets).abs().mean()),
            "rmse_model": float(((prediction - targets) ** 2).mean().sqrt()),
            "rmse_persistence": float(((persistence - targets) ** 2).mean().sqrt()),
            "windows": len(targets),
            "all_windows": len(targets) == int(ctx.inputs.get("held_total", len(targets)))}, None


def _forecast_skill(ctx: CheckContext) -> Verdict:
    errors, problem = forecast_errors(ctx)
    if problem:
        return problem
    threshold = SKILL_THRESHOLD.get(ctx.profile, 1.0)
    ratio = errors["model"] / errors["persistence"] if errors["persistence"] > 0 else float("inf")
    figures = dict(mae=f"{errors['model']:.4g}", persistence=f"{errors['persistence']:.4g}", ratio=f"{ratio:.3f}",
                   threshold=f"{threshold:g}", windows=errors["windows"], horizon=HORIZON)
    if ratio < threshold:
        return Verdict("pass", msg("w5l.skill_ok", **figures))
    return Verdict("fail", msg("w5l.skill_fail", **figures))


# --- experiments: the submitted artifacts, checked against what the grader's run wrote -------------

ARTIFACTS = ArtifactSpec(folders=("gate_analysis", "time_series_forecasting"))
METRICS = "time_series_forecasting/metrics.csv"
GATE_STATS = "gate_analysis/gate_stats.csv"
GRADIENT_FLOW = "gate_analysis/gradient_flow.csv"
METRICS_COLUMNS = {"model": str, "mae": float, "rmse": float}
GATE_COLUMNS = {"gate": str, "mean_abs": float, "std": float, "saturated_frac": float}
FLOW_COLUMNS = {"model": str, "step": int, "grad_norm": float}


_tables = artifacts.tables  # (submitted rows, the run's rows, a failing verdict or None)


def _forecast_table(ctx: CheckContext) -> Verdict:
    mine, ours, problem = _tables(ctx, "time_series_forecasting", "metrics.csv", METRICS_COLUMNS, METRICS)
    if problem:
        return problem
    models = {r["model"] for r in mine}
    if not {"lstm", "persistence"} <= models:
        return Verdict("fail", msg("w5l.metrics_models", models=", ".join(sorted(models)) or "-"))
    differs = artifacts.compare_tables(mine, ours, ("model",), {"mae": 1.5, "rmse": 1.5}, name=METRICS)
    if differs:
        return Verdict("fail", differs)
    # The run's table against the judge's own measurement of the same run: the persistence row says
    # whether the notebook evaluates on the template's held-out windows, the lstm row whether it
    # reports the model it leaves as FORECASTER.
    errors, problem = forecast_errors(ctx)
    if problem:
        return Verdict("fail", msg("w5l.metrics_unmeasured", reason=problem.message))
    run = {r["model"]: r for r in ours}
    # On every held-out window the figures must agree closely; on a seeded draw of them (a long
    # series) the judge's estimate has its own sampling error.
    factors = (1.02, 1.1) if errors["all_windows"] else (1.2, 1.25)
    for model, measured, factor in (("persistence", errors["persistence"], factors[0]),
                                    ("lstm", errors["model"], factors[1])):
        claimed = run[model]["mae"]
        if claimed <= 0 or max(claimed, measured) / min(claimed, measured) > factor:
            return Verdict("fail", msg("w5l.metrics_contradict", model=model, claimed=f"{claimed:.4g}",
                                       measured=f"{measured:.4g}", windows=errors["windows"]))
    return Verdict("pass", msg("w5l.metrics_ok", rows=len(mine), lstm=f"{errors['model']:.4g}",
                               persistence=f"{errors['persistence']:.4g}"))


def _gate_stats(ctx: CheckContext) -> Verdict:
    mine, ours, problem = _tables(ctx, "gate_analysis", "gate_stats.csv", GATE_COLUMNS, GATE_STATS)
    if problem:
        return problem
    gates = sorted({r["gate"] for r in mine})
    if gates != ["f", "g", "i", "o"]:
        return Verdict("fail", msg("w5l.gate_rows", gates=", ".join(gates) or "-"))
    for row in mine:
        if row["mean_abs"] > 1.0 + 1e-6 or row["saturated_frac"] > 1.0 + 1e-6:
            return Verdict("fail", msg("w5l.gate_out_of_range", gate=row["gate"]))
    differs = artifacts.compare_tables(mine, ours, ("gate",), {"mean_abs": 1.5, "std": 2.0}, name=GATE_STATS)
    if differs:
        return Verdict("fail", differs)
    forget = next(r for r in mine if r["gate"] == "f")
    return Verdict("pass", msg("w5l.gate_stats_ok", forget=f"{forget['mean_abs']:.3f}"))


def _gradient_flow(ctx: CheckContext) -> Verdict:
    mine, ours, problem = _tables(ctx, "gate_analysis", "gradient_flow.csv", FLOW_COLUMNS, GRADIENT_FLOW)
    if problem:
        return problem
    steps = {m: {r["step"] for r in mine if r["model"] == m} for m in ("lstm", "rnn")}
    if min(len(s) for s in steps.values()) < 10:
        return Verdict("fail", msg("w5l.flow_coverage", lstm=len(steps["lstm"]), rnn=len(steps["rnn"])))
    differs = artifacts.compare_tables(mine, ours, ("model", "step"), {"grad_norm": 2.0}, name=GRADIENT_FLOW)
    if differs:
        return Verdict("fail", differs)
    return Verdict("pass", msg("w5l.flow_ok", steps=len(steps["lstm"]), models=len({r["model"] for r in mine})))


def _plots(folder: str, what: str) -> CheckDef:
    def check(ctx: CheckContext) -> Verdict:
        ok, message, figure = artifacts.compare_plots(artifacts.copies(ctx, folder), what=msg(f"w5l.what.{what}"))
        return Verdict("pass" if ok else "fail", message, figure=figure)

    return CheckDef(check)


# --- requirements: implemented, not borrowed ------------------------------------------------------

MODELS = ("LSTMCell", "LSTM", "GRUCell", "LSTMForecaster", "AttentionLSTM", "LSTMVAE", "FORECASTER")
RNN_APIS = (
    "torch.nn.LSTM", "torch.nn.LSTMCell", "torch.nn.GRU", "torch.nn.GRUCell", "torch.nn.RNN", "torch.nn.RNNCell",
    "torch.nn.RNNBase", "torch.nn.RNNCellBase", "torch.nn.modules.rnn",
    "torch.lstm", "torch.lstm_cell", "torch.gru", "torch.gru_cell", "torch.rnn_tanh", "torch.rnn_tanh_cell",
    "torch.rnn_relu", "torch.rnn_relu_cell", "torch.quantized_lstm_cell", "torch.quantized_gru_cell",
    "torch.ops.aten.lstm", "torch.ops.aten.lstm_cell", "torch.ops.aten._thnn_fused_lstm_cell",
    "torch.ops.aten.gru", "torch.ops.aten.gru_cell", "torch.ops.aten._thnn_fused_gru_cell",
    "torch.ops.aten.rnn_tanh", "torch.ops.aten.rnn_tanh_cell", "torch.ops.aten.rnn_relu",
    "torch.ops.aten.rnn_relu_cell", "torch.ops.aten.mkldnn_rnn_layer", "torch.ops.aten._cudnn_rnn",
    "torch.ao.nn.quantized.dynamic", "torch.ao.nn.quantizable", "torch.nn.quantized.dynamic",
    "torch.nn.quantizable",
)
RNN_OPS = ("torch:lstm", "torch:lstm_cell", "torch:gru", "torch:gru_cell", "torch:rnn_tanh*", "torch:rnn_relu*",
           "torch:quantized_lstm*", "torch:quantized_gru*",
           "aten::lstm*", "aten::gru*", "aten::rnn_tanh*", "aten::rnn_relu*", "aten::_thnn_fused_lstm_cell*",
           "aten::_thnn_fused_gru_cell*", "aten::mkldnn_rnn*", "aten::_cudnn_rnn*", "aten::miopen_rnn*",
           "aten::_lstm_mps*", "aten::quantized_lstm*", "aten::quantized_gru*")
CLIP_APIS = ("torch.nn.utils.clip_grad_norm_", "torch.nn.utils.clip_grad_norm", "torch.nn.utils.clip_grad_value_",
             "torch.nn.utils.clip_grad", "torch.nn.utils.get_total_norm", "torch.nn.utils.clip_grads_with_norm_")
CLIP_OPS = ("aten::_foreach_norm*",)

REQUIREMENTS = [
    Forbidden("own-recurrence", MODELS, RNN_APIS, RNN_OPS, "w5l.what.rnn"),
    Forbidden("own-clipping", ("clip_gradients",), CLIP_APIS, CLIP_OPS, "w5l.what.clipping"),
]

FUNCTIONS = ("LSTMCell", "LSTM", "clip_gradients", "LSTMForecaster", "GRUCell", "AttentionLSTM", "LSTMVAE",
             "vae_loss")

CHECKS: dict[str, CheckDef] = {
    "lstm-cell": module_check("cell", "LSTMCell", {0: "w5l_hidden_state", 1: "w5l_cell_state"}, default_tol=FP32),
    "lstm-cell-grads": module_check("cell", "LSTMCell", {0: "w5l_hidden_state", 1: "w5l_cell_state"},
                                    default_tol=FP32, grads=True),
    "gates": CheckDef(_gates, function="LSTMCell", needs_reference=True),
    "grad-clipping": _all(_clip("clip_big", True), _clip("clip_small", False)),
    "lstm-sequence": module_check("seq", "LSTM", {0: "w5l_output", 1: "w5l_h_n", 2: "w5l_c_n"}, default_tol=FP32),
    "bidirectional": module_check("bidir", "LSTM", {0: "w5l_output", 1: "w5l_h_n", 2: "w5l_c_n"},
                                  default_tol=FP32, grads=True),
    "multistep": _all(property_check("multistep", "LSTMForecaster", _forecast_outputs(HORIZON, 5), changed_rows=(2,)),
                      property_check("multistep_short", "LSTMForecaster", _forecast_outputs(3, 3))),
    "forecast-skill": CheckDef(_forecast_skill, function="FORECASTER"),
    "forecast-table": CheckDef(_forecast_table),
    "forecast-plot": _plots("time_series_forecasting", "forecast_plot"),
    "gate-stats": CheckDef(_gate_stats),
    "gradient-flow": CheckDef(_gradient_flow),
    "gate-plots": _plots("gate_analysis", "gate_plots"),
    "bonus-gru": module_check("gru", "GRUCell", {0: "w5l_hidden_state"}, default_tol=FP32, grads=True),
    "bonus-attention": property_check(
        "attention", "AttentionLSTM",
        [Output(0, "w5l_forecast", (5, HORIZON)), Output(1, "weights", (5, WINDOW), 0.0, 1.0, sums_to_one=1)],
        changed_rows=(2,)),
    "bonus-vae": _all(
        property_check("vae", "LSTMVAE", [Output(0, "w5l_reconstruction", (5, 12, 1)), Output(1, "w5l_mu", (5, 4)),
                                          Output(2, "w5l_logvar", (5, 4))], changed_rows=(2,)),
        property_check("vae_generate", "LSTMVAE", [Output(0, "w5l_generated", (3, 7, 1))]),
        output_check("vae_loss", "vae_loss", {0: "w5l_loss", 1: "w5l_reconstruction_loss", 2: "w5l_kl"},
                     default_tol=FP32, n_outputs=3)),
    **quality_checks(FUNCTIONS),
}


SPEC = AssignmentSpec(
    id="w5-lstm",
    make_inputs=make_inputs,
    calls=CALLS,
    checks=CHECKS,
    requirements=REQUIREMENTS,
    artifacts=ARTIFACTS,
    reference_module="reference.lstm",
    hidden_module="reference.hidden_checks.w5_lstm",
)
