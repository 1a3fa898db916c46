"""Reference implementation of the w5-lstm assignment (RNN/LSTM deep dive).

Everything the student template asks for, in one self-contained file, ordered from the building
blocks up: the LSTM cell (with its gate activations exposed), the GRU cell, the sequence LSTM
(one or two directions), gradient-norm clipping, the multi-step forecaster and the persistence
baseline it must beat, then the bonus models (an attention-augmented LSTM forecaster and an LSTM
variational autoencoder with its loss).

Conventions (identical to ``torch.nn.LSTMCell`` / ``torch.nn.GRUCell`` / ``torch.nn.LSTM`` with
``batch_first=True``, so the same weights give the same numbers):
- ``LSTMCell``: ``weight_ih (4H, I)``, ``weight_hh (4H, H)``, ``bias_ih (4H,)``, ``bias_hh (4H,)``,
  the four row blocks in the gate order **i, f, g, o**;
  ``i, f, o = sigmoid(.)``, ``g = tanh(.)``, ``c' = f * c + i * g``, ``h' = o * tanh(c')``;
- ``GRUCell``: ``weight_ih (3H, I)``, ``weight_hh (3H, H)``, biases ``(3H,)``, blocks **r, z, n**;
  ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h' = (1 - z) * n + z * h``;
- ``LSTM``: ``x (B, T, I)`` -> ``output (B, T, D*H)``, ``h_n (D, B, H)``, ``c_n (D, B, H)`` with
  ``D = 2`` when bidirectional; the reverse direction reads the sequence from ``T-1`` down to ``0``,
  its outputs are put back in the original time order and its final state is the one after step 0;
  parameters ``cell.*`` (forward) and ``cell_reverse.*`` (reverse);
- clipping: ``total = sqrt(sum_k ||g_k||^2)`` over every gradient together, each gradient scaled by
  ``min(1, max_norm / (total + 1e-6))`` (as ``torch.nn.utils.clip_grad_norm_``).

References:
- Hochreiter & Schmidhuber 1997, "Long Short-Term Memory".
- Gers, Schmidhuber & Cummins 2000, "Learning to Forget: Continual Prediction with LSTM".
- Cho et al. 2014, "Learning Phrase Representations using RNN Encoder-Decoder for Statistical
  Machine Translation" (the GRU).
- Schuster & Paliwal 1997, "Bidirectional Recurrent Neural Networks".
- Pascanu, Mikolov & Bengio 2013, "On the difficulty of training recurrent neural networks"
  (gradient-norm clipping; vanishing and exploding gradients).
- Jozefowicz, Zaremba & Sutskever 2015, "An Empirical Exploration of Recurrent Network
  Architectures" (forget-gate bias of 1).
- Bahdanau, Cho & Bengio 2015, "Neural Machine Translation by Jointly Learning to Align and
  Translate" (additive attention).
- Kingma & Welling 2014, "Auto-Encoding Variational Bayes"; Fabius & van Amersfoort 2015,
  "Variational Recurrent Auto-Encoders" (the LSTM-VAE).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = [
    "ForecastConfig",
    "LSTMCell",
    "GRUCell",
    "LSTM",
    "clip_gradients",
    "LSTMForecaster",
    "persistence_forecast",
    "AttentionLSTM",
    "LSTMVAE",
    "vae_loss",
]

CLIP_EPS = 1e-6  # as torch.nn.utils.clip_grad_norm_: no division by zero for an all-zero gradient


@dataclass
class ForecastConfig:
    """What the template fixes for forecasting (the judge draws its held-out windows with it)."""

    window: int = 24            # observed steps fed to the model
    horizon: int = 6            # steps forecast at once (direct multi-step)
    train_fraction: float = 0.8  # the first 80% of the series is for training; the rest is held out
    hidden_size: int = 32
    bidirectional: bool = False


def _uniform_(module: nn.Module, hidden_size: int) -> None:
    """torch.nn.LSTMCell's initialisation: every parameter ~ U(-1/sqrt(H), 1/sqrt(H))."""
    bound = 1.0 / math.sqrt(hidden_size)
    for p in module.parameters():
        nn.init.uniform_(p, -bound, bound)


# -----------------------------------------------------------------------------
# Cells


class LSTMCell(nn.Module):
    """One LSTM step with the parameter layout of torch.nn.LSTMCell (gates i, f, g, o)."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size))
        _uniform_(self, hidden_size)

    def _zeros(self, x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[0], self.hidden_size)  # (B, H)

    def gate_activations(self, x: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(i, f, g, o), each (B, H): i, f, o in (0, 1), g in (-1, 1)."""
        h = self._zeros(x) if h is None else h
        pre = x @ self.weight_ih.T + self.bias_ih + h @ self.weight_hh.T + self.bias_hh  # (B, I) @ (I, 4H) -> (B, 4H)
        i, f, g, o = pre.chunk(4, dim=-1)  # 4 x (B, H)
        return torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)

    def forward(self, x: Tensor, h: Tensor | None = None, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (B, I), h and c (B, H) (zeros when None) -> (h', c'), each (B, H)."""
        c = self._zeros(x) if c is None else c
        i, f, g, o = self.gate_activations(x, h)
        c_next = f * c + i * g  # (B, H): the additive path that lets gradients flow (dc'/dc = f)
        h_next = o * torch.tanh(c_next)  # (B, H)
        return h_next, c_next


class GRUCell(nn.Module):
    """One GRU step with the parameter layout of torch.nn.GRUCell (gates r, z, n)."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(3 * hidden_size))
        _uniform_(self, hidden_size)

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        """x (B, I), h (B, H) (zeros when None) -> h' (B, H)."""
        h = x.new_zeros(x.shape[0], self.hidden_size) if h is None else h
        xr, xz, xn = (x @ self.weight_ih.T + self.bias_ih).chunk(3, dim=-1)  # (B, I) @ (I, 3H) -> 3 x (B, H)
        hr, hz, hn = (h @ self.weight_hh.T + self.bias_hh).chunk(3, dim=-1)  # (B, H) @ (H, 3H) -> 3 x (B, H)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)  # r gates W_hn h + b_hn, as in torch (not h itself)
        return (1.0 - z) * n + z * h


# -----------------------------------------------------------------------------
# Sequences


class LSTM(nn.Module):
    """A one-layer LSTM over (B, T, I) sequences, one or two directions (batch_first)."""

    def __init__(self, input_size: int, hidden_size: int, bidirectional: bool = False):
        super().__init__()
        self.hidden_size, self.bidirectional = hidden_size, bidirectional
        self.cell = LSTMCell(input_size, hidden_size)
        self.cell_reverse = LSTMCell(input_size, hidden_size) if bidirectional else None

    @staticmethod
    def _run(cell: LSTMCell, x: Tensor, h: Tensor, c: Tensor, steps: range) -> tuple[Tensor, Tensor, Tensor]:
        outputs = [None] * x.shape[1]
        for t in steps:
            h, c = cell(x[:, t], h, c)  # (B, I) -> (B, H), (B, H)
            outputs[t] = h
        return torch.stack(outputs, dim=1), h, c  # (B, T, H), (B, H), (B, H)

    def forward(self, x: Tensor, h0: Tensor | None = None, c0: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, T, I); h0, c0 (D, B, H) or None -> output (B, T, D*H), h_n (D, B, H), c_n (D, B, H)."""
        B, T, _ = x.shape
        D = 2 if self.bidirectional else 1
        h0 = x.new_zeros(D, B, self.hidden_size) if h0 is None else h0
        c0 = x.new_zeros(D, B, self.hidden_size) if c0 is None else c0
        out, h, c = self._run(self.cell, x, h0[0], c0[0], range(T))
        if not self.bidirectional:
            return out, h.unsqueeze(0), c.unsqueeze(0)  # (B, T, H), (1, B, H), (1, B, H)
        out_r, h_r, c_r = self._run(self.cell_reverse, x, h0[1], c0[1], range(T - 1, -1, -1))
        output = torch.cat([out, out_r], dim=-1)  # (B, T, 2H): both directions at each original time step
        return output, torch.stack([h, h_r]), torch.stack([c, c_r])  # (2, B, H) each


def clip_gradients(*grads: Tensor, max_norm: float) -> tuple[Tensor, ...]:
    """(total_norm, *clipped): the global L2 norm of all gradients before clipping (0-d), then
    each gradient scaled by min(1, max_norm / (total_norm + 1e-6))."""
    total = torch.sqrt(sum((g.double() ** 2).sum() for g in grads))  # 0-d, accumulated in float64
    scale = torch.clamp(max_norm / (total + CLIP_EPS), max=1.0)
    return (total.to(grads[0].dtype), *(g * scale.to(g.dtype) for g in grads))


# -----------------------------------------------------------------------------
# Forecasting


class LSTMForecaster(nn.Module):
    """Direct multi-step forecaster: the LSTM's final state(s) -> the next `horizon` values."""

    def __init__(self, input_size: int = 1, hidden_size: int = 32, horizon: int = 6, bidirectional: bool = False):
        super().__init__()
        self.lstm = LSTM(input_size, hidden_size, bidirectional)
        D = 2 if bidirectional else 1
        self.head = nn.Linear(D * hidden_size, horizon)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, L, I) -> forecasts (B, horizon)."""
        _, h_n, _ = self.lstm(x)  # h_n (D, B, H)
        last = h_n.transpose(0, 1).reshape(x.shape[0], -1)  # (D, B, H) -> (B, D*H)
        return self.head(last)  # (B, D*H) @ (D*H, horizon) -> (B, horizon)


def persistence_forecast(windows: Tensor, horizon: int) -> Tensor:
    """The naive baseline: the last observed value, repeated. windows (N, L) -> (N, horizon)."""
    return windows[:, -1:].expand(-1, horizon)  # (N, 1) -> (N, horizon)


# -----------------------------------------------------------------------------
# Bonus: attention over the encoder's states, and an LSTM variational autoencoder


class AttentionLSTM(nn.Module):
    """LSTM encoder + additive attention (Bahdanau et al. 2015) from the last state over all states."""

    def __init__(self, input_size: int = 1, hidden_size: int = 32, horizon: int = 6):
        super().__init__()
        self.lstm = LSTM(input_size, hidden_size)
        self.query = nn.Linear(hidden_size, hidden_size, bias=False)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.score = nn.Linear(hidden_size, 1, bias=False)
        self.head = nn.Linear(2 * hidden_size, horizon)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, L, I) -> (forecasts (B, horizon), attention weights (B, L) summing to 1)."""
        states, h_n, _ = self.lstm(x)  # (B, L, H), (1, B, H)
        last = h_n[0]  # (B, H)
        energy = self.score(torch.tanh(self.key(states) + self.query(last).unsqueeze(1)))  # (B, L, H) -> (B, L, 1)
        weights = torch.softmax(energy.squeeze(-1), dim=-1)  # (B, L)
        context = (weights.unsqueeze(-1) * states).sum(dim=1)  # (B, L, 1) * (B, L, H) -> (B, H)
        return self.head(torch.cat([context, last], dim=-1)), weights  # (B, 2H) -> (B, horizon)


class LSTMVAE(nn.Module):
    """Sequence VAE: an LSTM encoder to q(z|x) = N(mu, diag(exp(logvar))), an LSTM decoder from z."""

    def __init__(self, input_size: int = 1, hidden_size: int = 32, latent_size: int = 8):
        super().__init__()
        self.input_size = input_size
        self.encoder = LSTM(input_size, hidden_size)
        self.to_mu = nn.Linear(hidden_size, latent_size)
        self.to_logvar = nn.Linear(hidden_size, latent_size)
        self.from_z = nn.Linear(latent_size, hidden_size)
        self.decoder = LSTMCell(latent_size, hidden_size)
        self.out = nn.Linear(hidden_size, input_size)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, I) -> (mu, logvar), each (B, Z)."""
        _, h_n, _ = self.encoder(x)  # (1, B, H)
        return self.to_mu(h_n[0]), self.to_logvar(h_n[0])  # (B, Z), (B, Z)

    def decode(self, z: Tensor, steps: int) -> Tensor:
        """z (B, Z) -> a sequence (B, steps, I); z is the decoder's input at every step."""
        h = torch.tanh(self.from_z(z))  # (B, H)
        c = torch.zeros_like(h)
        outputs = []
        for _ in range(steps):
            h, c = self.decoder(z, h, c)
            outputs.append(self.out(h))  # (B, I)
        return torch.stack(outputs, dim=1)  # (B, steps, I)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, T, I) -> (reconstruction (B, T, I), mu (B, Z), logvar (B, Z)); z = mu in eval mode."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu  # reparameterisation
        return self.decode(z, x.shape[1]), mu, logvar

    def generate(self, n: int, steps: int) -> Tensor:
        """n sequences (n, steps, I) decoded from z ~ N(0, I)."""
        z = torch.randn(n, self.to_mu.out_features, device=self.out.weight.device)
        return self.decode(z, steps)


def vae_loss(recon: Tensor, x: Tensor, mu: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, reconstruction, kl), each 0-d and averaged over the batch: reconstruction = the squared
    error summed over time and features; kl = KL(N(mu, exp(logvar)) || N(0, I)) summed over Z."""
    B = x.shape[0]
    reconstruction = ((recon - x) ** 2).sum() / B
    kl = -0.5 * (1.0 + logvar - mu ** 2 - logvar.exp()).sum() / B
    return reconstruction + kl, reconstruction, kl
