# This file is NOT imported by the grader: its text is the body of the probe cell that the grader
# appends after the student's cells. It runs inside the student's kernel, so it trusts nothing
# there and decides nothing: it calls the student's code on the grader's inputs and writes plain
# data (safetensors + JSON). The verdicts are made later, outside, by the judge.
# The results leave as one display output of this cell (a private MIME type), which the runner
# process picks out of the kernel's messages: no file is written that other code could rewrite
# or pre-place. The call's two arguments (the plan and the inputs) are filled in by
# build_probe_source, on the last line only.
#
# Order matters (nothing student-controlled may carry hidden data back):
#   1. the artifacts the notebook's run wrote, and the ANSWERS dict, are read first, before any
#      call, so no value seen during a call can end up in them;
#   2. the public calls, then the measuring calls (FLOPs, peak memory, operators);
#   3. the hidden calls last, with stdout/stderr discarded and only a status kept per call.
# Every call also records which torch functions and ATen operators it ran (the dynamic layer of
# the "implemented, not borrowed" requirements), as plain names.


def __grader_probe(plan, inputs_b64):
    import base64
    import contextlib
    import io
    import json
    import math
    import os
    import signal
    import stat
    import time
    import traceback
    import weakref

    import torch
    from IPython import get_ipython
    from safetensors.torch import load as load_tensors
    from safetensors.torch import save as save_tensors
    from torch.overrides import TorchFunctionMode
    from torch.utils._python_dispatch import TorchDispatchMode

    namespace = globals()

    def lookup(name):
        # "package.Name": code beside the notebook (the midterm's package), imported, then the attribute.
        found = namespace.get(name)
        if found is None and "." in name:
            import importlib

            module_name, _, attribute = name.rpartition(".")
            try:
                found = getattr(importlib.import_module(module_name), attribute, None)
            except Exception:  # noqa: BLE001 - a package that does not import: the call is "missing"
                found = None
        return found
    inputs = load_tensors(base64.b64decode(inputs_b64))
    device = plan.get("device") or "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        device = "cpu"
    max_ops = 400

    # --- 1. what the run wrote, and the answers, before any call --------------------------------
    def read_artifacts(spec):
        found, notes, total = {}, [], 0
        suffixes = tuple(s.lower() for s in spec.get("suffixes", ()))
        root = os.path.realpath(os.getcwd())
        for folder in spec.get("folders", ()):
            base = os.path.join(root, folder)
            try:
                if not stat.S_ISDIR(os.lstat(base).st_mode):
                    continue
            except OSError:
                continue
            for current, dirs, files in os.walk(base):
                dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(current, d)))[:20]
                for name in sorted(files)[:200]:
                    path = os.path.join(current, name)
                    rel = os.path.relpath(path, root).replace(os.sep, "/")
                    if not name.lower().endswith(suffixes):
                        continue
                    try:
                        info = os.lstat(path)
                    except OSError:
                        continue
                    if not stat.S_ISREG(info.st_mode):
                        notes.append([rel, "not a regular file"])
                        continue
                    if info.st_size > spec["max_file_bytes"] or total + info.st_size > spec["max_total_bytes"]:
                        notes.append([rel, "too large"])
                        continue
                    with open(path, "rb") as handle:
                        data = handle.read(spec["max_file_bytes"] + 1)
                    total += len(data)
                    found[rel] = base64.b64encode(data).decode("ascii")
        return found, notes

    def plain(value, depth=0):
        if value is None or isinstance(value, (bool, int, str)):
            return value if not isinstance(value, str) else value[:200]
        if isinstance(value, float):
            return value if math.isfinite(value) else str(value)
        if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
            return plain(value.item(), depth)
        if isinstance(value, (list, tuple)) and depth < 2:
            return [plain(v, depth + 1) for v in value[:20]]
        return repr(value)[:100]

    artifacts, artifact_notes = read_artifacts(plan["artifacts"]) if plan.get("artifacts") else ({}, [])
    answers = namespace.get(plan.get("answers_variable", "ANSWERS"))
    answers = {str(k)[:100]: plain(v) for k, v in list(answers.items())[:100]} if isinstance(answers, dict) else None

    # --- recording: torch functions and ATen operators; FLOPs and live bytes when measuring -----
    class Functions(TorchFunctionMode):
        def __init__(self, seen):
            super().__init__()
            self.seen = seen

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if len(self.seen) < max_ops:
                name = getattr(func, "__name__", None) or type(func).__name__
                self.seen.add("torch:" + str(name))
            return func(*args, **(kwargs or {}))

    def tensors_in(value, found=None, depth=0):
        # The tensors among an operator's arguments or results (lists, tuples, dicts of them):
        # torch's pytree flattening does the same, several times slower, on every operator.
        found = [] if found is None else found
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif depth < 4 and isinstance(value, (list, tuple)):
            for item in value:
                tensors_in(item, found, depth + 1)
        elif depth < 4 and isinstance(value, dict):
            for item in value.values():
                tensors_in(item, found, depth + 1)
        return found

    class Operators(TorchDispatchMode):
        """Names of the ATen operators run; with `tally`, the bytes of tensor storages the call
        allocated that are alive at once (peak), the largest one, the elements produced, and the
        FLOPs by torch's own formulas (torch.utils.flop_counter's registry, which is what
        FlopCounterMode counts with: matmuls, convolutions, fused attention)."""

        @classmethod
        def _should_skip_dynamo(cls):
            # torch wraps a mode's __torch_dispatch__ in dynamo.disable unless told otherwise, and
            # the wrapper imports torch._dynamo on first use: ~1.5 s, for a mode that never
            # compiles anything. (FlopCounterMode's own inner mode is wrapped: hence our counting.)
            return False

        def __init__(self, seen, tally=False, flop_formulas=None):
            super().__init__()
            self.seen, self.tally = seen, tally
            self.live = self.peak = self.elements = self.flops = 0
            self.largest = (0, [])
            self.counted = set()
            self.flop_formulas = flop_formulas or {}

        def _free(self, key, nbytes):
            self.counted.discard(key)
            self.live -= nbytes

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if len(self.seen) < max_ops:
                self.seen.add(func.name())
            if self.tally and func._overloadpacket not in self.flop_formulas:
                # As FlopCounterMode does: an operator without a formula may decompose into ones
                # with a formula (and those come back through this mode).
                try:
                    with self:
                        decomposed = func.decompose(*args, **kwargs)
                except Exception:  # noqa: BLE001 - no decomposition: run it as it is
                    decomposed = NotImplemented
                if decomposed is not NotImplemented:
                    return decomposed
            out = func(*args, **kwargs)
            if self.tally:
                try:
                    formula = self.flop_formulas.get(func._overloadpacket)
                    if formula is not None:
                        self.flops += int(formula(*args, **kwargs, out_val=out))
                    self._count(args, kwargs, out)
                except Exception:  # noqa: BLE001 - bookkeeping must never fail the student's call
                    pass
            return out

        def _count(self, args, kwargs, out):
            owned = {id(t.untyped_storage()) for t in tensors_in((args, kwargs))}
            for t in tensors_in(out):
                self.elements += t.numel()
                storage = t.untyped_storage()
                key = id(storage)
                if key in owned or key in self.counted:
                    continue  # a view or an in-place result: no new memory
                nbytes = storage.nbytes()
                self.counted.add(key)
                self.live += nbytes
                weakref.finalize(storage, self._free, key, nbytes)
                if nbytes > self.largest[0]:
                    self.largest = (nbytes, list(t.shape))
                self.peak = max(self.peak, self.live)

    class ProbeCallTimeout(Exception):
        pass

    def on_alarm(signum, frame):
        raise ProbeCallTimeout()

    probe_file = None  # the probe cell's own file: its frames are not the student's
    try:
        import sys as _sys

        probe_file = _sys._getframe().f_code.co_filename
    except (AttributeError, ValueError):
        pass

    def student_line(tb):
        # The innermost frame that belongs to the notebook (an ipykernel cell), for the message.
        for frame in reversed(traceback.extract_tb(tb)):
            if frame.filename == probe_file:
                continue
            if "ipykernel" in frame.filename or frame.filename.startswith("<"):
                return {"function": frame.name, "line": frame.lineno, "code": (frame.line or "")[:120]}
        return None

    def as_tensor(value):
        if isinstance(value, torch.Tensor):
            return value
        if type(value).__module__ == "numpy":
            return torch.from_numpy(value.copy())
        return None

    def tensor_args(call, names_key="args", kwargs_key="tensor_kwargs"):
        args = [inputs[n].clone().to(device) for n in call.get(names_key, ())]
        kwargs = dict(call.get("kwargs", {}))
        for key, tensor_name in call.get(kwargs_key, {}).items():
            kwargs[key] = inputs[tensor_name].clone().to(device)
        return args, kwargs

    def outputs_of(value):
        return list(value) if isinstance(value, (tuple, list)) else [value]

    def keep_outputs(cid, values, entry, tensors, prefix=""):
        entry.setdefault("types", [])
        for i, item in enumerate(values):
            tensor = as_tensor(item)
            if not prefix:
                entry["types"].append("None" if item is None else type(item).__name__)
            if tensor is not None:
                tensors[f"{cid}/{prefix}{i}"] = tensor.detach().to("cpu").contiguous().clone()

    def load_state(module, wanted):
        """Load the judge's parameters into the student's module by the names the template fixes."""
        problems = []
        own = dict(module.named_parameters())
        own.update(dict(module.named_buffers()))
        for name, input_name in wanted.items():
            value = inputs[input_name]
            if name not in own:
                problems.append(f"parameter {name}: not found in your module")
                continue
            if tuple(own[name].shape) != tuple(value.shape):
                problems.append(f"parameter {name}: expected shape {tuple(value.shape)}, yours {tuple(own[name].shape)}")
                continue
            with torch.no_grad():
                own[name].copy_(value.to(own[name].device, own[name].dtype))
        return problems

    def run_module(call, entry, tensors):
        cls = lookup(call["function"])
        module = cls(**call.get("init_kwargs", {}))
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"{call['function']}(...) is not a torch.nn.Module")
        module = module.to(device)
        module.train(bool(call.get("train_mode", False)))
        problems = load_state(module, call.get("state") or {})
        if problems:
            return {"status": "state", "message": "; ".join(problems)[:400], "problems": problems[:20]}
        params = list(module.named_parameters())
        entry["params"] = [[n, list(p.shape)] for n, p in params][:200]
        entry["n_params"] = int(sum(p.numel() for _, p in params))
        args, kwargs = tensor_args(call)
        backward = call.get("backward")
        if backward is not None:
            for a in args:
                if a.is_floating_point():
                    a.requires_grad_(True)
        method = getattr(module, call.get("method") or "forward") if call.get("method") else module
        with torch.set_grad_enabled(backward is not None):
            values = outputs_of(method(*args, **kwargs))
        if backward is not None:
            weights = backward.get("weights", {})
            loss = 0.0
            for i, item in enumerate(values):
                if isinstance(item, torch.Tensor) and item.is_floating_point() and item.requires_grad:
                    w = inputs[weights[str(i)]].to(item.device, item.dtype) if str(i) in weights else 1.0
                    loss = loss + (item * w).sum()
            if isinstance(loss, torch.Tensor):
                loss.backward()
            for n, a in enumerate(args):
                if a.grad is not None:
                    tensors[f"{call['id']}/grad/arg{n}"] = a.grad.detach().to("cpu").contiguous().clone()
            for name, p in params:
                if p.grad is not None:
                    tensors[f"{call['id']}/grad/param/{name}"] = p.grad.detach().to("cpu").contiguous().clone()
        keep_outputs(call["id"], values, entry, tensors)
        entry["n_outputs"] = len(values)
        for j, variant in enumerate(call.get("perturb", ())[:8]):
            v_args = [inputs[n].clone().to(device) for n in variant.get("args", ())]
            v_kwargs = dict(call.get("kwargs", {}))
            for key, tensor_name in variant.get("tensor_kwargs", {}).items():
                v_kwargs[key] = inputs[tensor_name].clone().to(device)
            with torch.no_grad():
                keep_outputs(call["id"], outputs_of(method(*v_args, **v_kwargs)), entry, tensors, prefix=f"p{j}/")
        return None

    def run_object(call, entry, tensors):
        target = lookup(call["function"])
        if call.get("method"):
            target = getattr(target, call["method"])
        model = lookup(call["function"])
        if isinstance(model, torch.nn.Module):
            model.eval()
            first = next(iter(model.parameters()), None)
            target_device = first.device if first is not None else torch.device(device)
        else:
            target_device = torch.device(device)
        args = [inputs[n].clone().to(target_device) for n in call.get("args", ())]
        kwargs = dict(call.get("kwargs", {}))
        with torch.no_grad():
            values = outputs_of(target(*args, **kwargs))
        keep_outputs(call["id"], values, entry, tensors)
        entry["n_outputs"] = len(values)

    def run_function(call, entry, tensors, measuring):
        fn = lookup(call["function"])
        args, kwargs = tensor_args(call)
        values = outputs_of(fn(*args, **kwargs))
        if not measuring:
            keep_outputs(call["id"], values, entry, tensors)
        entry["n_outputs"] = len(values)

    def measure_cuda_start():
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return torch.cuda.memory_allocated()
        return None

    calls, tensors = {}, {}
    flop_formulas = None  # torch's FLOP formulas, imported with the first measuring call
    previous = signal.signal(signal.SIGALRM, on_alarm)
    # The probe's calls are small: one thread each is as fast, and immune to a loaded machine's
    # thread contention (many tiny matmuls under an OpenMP barrier). Restored afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    sink = io.StringIO()
    ordered = [c for c in plan["calls"] if not c.get("hidden")] + [c for c in plan["calls"] if c.get("hidden")]
    for call in ordered:
        cid, name, kind = call["id"], call["function"], call.get("kind", "function")
        hidden, measuring = bool(call.get("hidden")), bool(call.get("measure"))
        target = lookup(name)
        if kind == "object" and target is None:
            calls[cid] = {"status": "missing", "message": f"no object named {name} was left by the notebook"}
            continue
        if kind != "object" and not callable(target):
            calls[cid] = {"status": "missing", "message": f"no function or class named {name} is defined"}
            continue
        entry = {"status": "ok", "types": []}
        seen = set()
        if measuring and flop_formulas is None:
            from torch.utils.flop_counter import flop_registry as flop_formulas
        operators = Operators(seen, tally=measuring, flop_formulas=flop_formulas)
        started = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, plan["call_timeout_s"])
        quiet = contextlib.ExitStack()
        if hidden:  # nothing a hidden call prints may reach anything the student sees
            quiet.enter_context(contextlib.redirect_stdout(sink))
            quiet.enter_context(contextlib.redirect_stderr(sink))
        try:
            with quiet:
                cuda_base = measure_cuda_start() if measuring else None
                with contextlib.ExitStack() as modes:
                    modes.enter_context(Functions(seen))
                    modes.enter_context(operators)
                    if kind == "module":
                        failed = run_module(call, entry, tensors)
                        if failed:
                            entry = failed
                    elif kind == "object":
                        run_object(call, entry, tensors)
                    else:
                        run_function(call, entry, tensors, measuring)
                if measuring and entry.get("status") == "ok":
                    entry["measured"] = {"flops": int(operators.flops), "elements": int(operators.elements),
                                         "peak_bytes": int(operators.peak), "largest_bytes": int(operators.largest[0]),
                                         "largest_shape": operators.largest[1][:8], "device": "cpu"}
                    if cuda_base is not None:
                        torch.cuda.synchronize()
                        entry["measured"].update(peak_bytes=int(torch.cuda.max_memory_allocated() - cuda_base),
                                                 device="cuda")
        except NotImplementedError as exc:
            entry = {"status": "not_implemented", "message": "" if hidden else str(exc)[:200]}
        except ProbeCallTimeout:
            entry = {"status": "timeout", "message": "" if hidden else f"{name} did not return within {plan['call_timeout_s']:g} s"}
        except Exception as exc:  # noqa: BLE001 - the student's exception becomes a message
            entry = {"status": "error", "message": "" if hidden else f"{type(exc).__name__}: {exc}"[:200],
                     "where": None if hidden else student_line(exc.__traceback__)}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        entry["ops"] = sorted(seen)[:max_ops]
        entry["duration_s"] = round(time.perf_counter() - started, 6)
        if hidden:  # a status and the operators only: no message, nothing printed
            entry.pop("where", None)
        calls[cid] = entry
    signal.signal(signal.SIGALRM, previous)
    torch.set_num_threads(threads)

    payload = {"nonce": plan["nonce"], "calls": calls, "answers": answers,
               "artifacts": artifacts, "artifact_notes": artifact_notes,
               "tensors": base64.b64encode(save_tensors(tensors)).decode("ascii")}
    get_ipython().display_pub.publish(data={plan["mime"]: json.dumps(payload)}, metadata={})


__grader_probe(__PLAN__, __INPUTS__)
del __grader_probe
