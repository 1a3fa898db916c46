# This file is NOT imported by the grader: its text is the body of the probe cell that the grader
# appends after the student's cells. It runs inside the student's kernel, so it trusts nothing
# there and decides nothing: it calls the student's functions on the grader's inputs and writes
# plain data (safetensors + JSON). The verdicts are made later, outside, by the judge.
# The results leave as one display output of this cell (a private MIME type), which the runner
# process picks out of the kernel's messages: no file is written that other code could rewrite
# or pre-place. Placeholders __PLAN__ and __INPUTS__ are filled in by build_probe_source.


def __grader_probe(plan, inputs_b64):
    import base64
    import json
    import math
    import signal
    import time
    import traceback

    import torch
    from IPython import get_ipython
    from safetensors.torch import load as load_tensors
    from safetensors.torch import save as save_tensors

    namespace = globals()
    inputs = load_tensors(base64.b64decode(inputs_b64))
    device = plan.get("device") or "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        device = "cpu"

    class ProbeCallTimeout(Exception):
        pass

    def on_alarm(signum, frame):
        raise ProbeCallTimeout()

    def student_line(tb):
        # The innermost frame that belongs to the notebook (an ipykernel cell), for the message.
        for frame in reversed(traceback.extract_tb(tb)):
            if "ipykernel" in frame.filename or frame.filename.startswith("<"):
                return {"function": frame.name, "line": frame.lineno, "code": (frame.line or "")[:200]}
        return None

    def as_tensor(value):
        if isinstance(value, torch.Tensor):
            return value
        if type(value).__module__ == "numpy":
            return torch.from_numpy(value.copy())
        return None

    calls, tensors = {}, {}
    previous = signal.signal(signal.SIGALRM, on_alarm)
    for call in plan["calls"]:
        cid, name = call["id"], call["function"]
        fn = namespace.get(name)
        if not callable(fn):
            calls[cid] = {"status": "missing", "message": f"no function named {name} is defined"}
            continue
        args = [inputs[n].clone().to(device) for n in call["args"]]
        kwargs = dict(call.get("kwargs", {}))
        for key, tensor_name in call.get("tensor_kwargs", {}).items():
            kwargs[key] = inputs[tensor_name].clone().to(device)
        started = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, plan["call_timeout_s"])
        try:
            value = fn(*args, **kwargs)
        except NotImplementedError as exc:
            calls[cid] = {"status": "not_implemented", "message": str(exc)[:300]}
            continue
        except ProbeCallTimeout:
            calls[cid] = {"status": "timeout",
                          "message": f"{name} did not return within {plan['call_timeout_s']:g} s"}
            continue
        except Exception as exc:  # noqa: BLE001 - the student's exception becomes a message
            calls[cid] = {"status": "error", "message": f"{type(exc).__name__}: {exc}"[:500],
                          "where": student_line(exc.__traceback__)}
            continue
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        duration = time.perf_counter() - started
        values = list(value) if isinstance(value, (tuple, list)) else [value]
        entry = {"status": "ok", "n_outputs": len(values), "types": [], "duration_s": round(duration, 6)}
        for i, item in enumerate(values):
            tensor = as_tensor(item)
            entry["types"].append(type(item).__name__)
            if tensor is not None:
                tensors[f"{cid}/{i}"] = tensor.detach().to("cpu").contiguous().clone()
            elif item is None:
                entry["types"][-1] = "None"
        calls[cid] = entry
    signal.signal(signal.SIGALRM, previous)

    def plain(value, depth=0):
        if value is None or isinstance(value, (bool, int, str)):
            return value if not isinstance(value, str) else value[:2000]
        if isinstance(value, float):
            return value if math.isfinite(value) else str(value)
        if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
            return plain(value.item(), depth)
        if isinstance(value, (list, tuple)) and depth < 2:
            return [plain(v, depth + 1) for v in value[:50]]
        return repr(value)[:200]

    answers = namespace.get(plan.get("answers_variable", "ANSWERS"))
    answers = {str(k)[:100]: plain(v) for k, v in list(answers.items())[:100]} if isinstance(answers, dict) else None
    payload = {"nonce": plan["nonce"], "calls": calls, "answers": answers,
               "tensors": base64.b64encode(save_tensors(tensors)).decode("ascii")}
    get_ipython().display_pub.publish(data={plan["mime"]: json.dumps(payload)}, metadata={})


__grader_probe(__PLAN__, __INPUTS__)
del __grader_probe
