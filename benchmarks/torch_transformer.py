"""The PyTorch reference of grokjax's transformer (`grokjax.models.transformer`), trained the way research code
trains many seeds at once: every parameter carries an instance axis and all instances step together.

Same architecture (x, op, y, = in; post-LayerNorm blocks of causal attention without biases and a ReLU MLP;
learned positions; logits at the last position), same init distributions, `torch.optim.AdamW` (betas 0.9/0.98),
a minibatch of `batch` training points per instance and step (each instance its own random rows), and the
full-table accuracy of every instance every `log_every` steps.
"""

import time

import numpy as np
import torch
import torch.nn.functional as F


class InstancedTransformer(torch.nn.Module):
    def __init__(self, instances: int, vocab: int, n_out: int, n_layers: int = 2, d: int = 128, heads: int = 4,
                 d_mlp: int = 512):
        super().__init__()
        self.vocab, self.heads = vocab, heads
        dh = d // heads
        P = torch.nn.Parameter

        def uniform(*shape, fan_in):
            return P(torch.empty(instances, *shape).uniform_(-fan_in**-0.5, fan_in**-0.5))

        self.embed = P(torch.randn(instances, vocab + 2, d))
        self.pos = P(torch.randn(instances, 4, d))
        self.layers = torch.nn.ModuleList()
        for _ in range(n_layers):
            layer = torch.nn.Module()
            layer.wq, layer.wk, layer.wv = (uniform(d, heads, dh, fan_in=d) for _ in range(3))
            layer.wo = uniform(heads, dh, d, fan_in=d)
            layer.w_in, layer.w_out = uniform(d, d_mlp, fan_in=d), uniform(d_mlp, d, fan_in=d_mlp)
            layer.ln = torch.nn.ParameterList([P(torch.ones(instances, d)), P(torch.zeros(instances, d)),
                                               P(torch.ones(instances, d)), P(torch.zeros(instances, d))])
            self.layers.append(layer)
        self.unembed = uniform(d, n_out, fan_in=d)
        self.register_buffer("causal", torch.tril(torch.ones(4, 4, dtype=torch.bool)))

    def forward(self, left, right):
        """Logits (instances, batch, n_out) of `left o right =` for token pairs (instances, batch)."""
        seq = torch.stack([left, torch.full_like(left, self.vocab), right, torch.full_like(left, self.vocab + 1)], -1)
        inst = torch.arange(seq.shape[0])[:, None, None]
        x = self.embed[inst, seq] + self.pos[:, None]  # (I, B, 4, d)
        norm = lambda y, g, b: F.layer_norm(y, y.shape[-1:], eps=1e-5) * g[:, None, None] + b[:, None, None]
        for layer in self.layers:
            q, k, v = (torch.einsum("ibnd,idhe->ibhne", x, w) for w in (layer.wq, layer.wk, layer.wv))
            scores = torch.einsum("ibhqe,ibhke->ibhqk", q, k) / q.shape[-1] ** 0.5
            scores = scores.masked_fill(~self.causal, float("-inf"))
            attended = torch.einsum("ibhqk,ibhke->ibhqe", scores.softmax(-1), v)
            x = norm(x + torch.einsum("ibhne,ihed->ibnd", attended, layer.wo), layer.ln[0], layer.ln[1])
            hidden = torch.relu(torch.einsum("ibnd,idm->ibnm", x, layer.w_in))
            x = norm(x + torch.einsum("ibnm,imd->ibnd", hidden, layer.w_out), layer.ln[2], layer.ln[3])
        return torch.einsum("ibd,idc->ibc", x[:, :, -1], self.unembed)


def rate(data, instances: int, steps: int, batch: int, log_every: int, lr=1e-3, wd=0.0) -> float:
    """Model-steps per second of `instances` transformers trained together on the grokjax `Data` for `steps`
    minibatch steps (after one warm-up step), full-table accuracy every `log_every` steps."""
    torch.manual_seed(0)
    model = InstancedTransformer(instances, data.vocab, data.n_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-8, weight_decay=wd)
    left, right = (torch.as_tensor(data.inputs[data.train_idx][:, i], dtype=torch.long) for i in range(2))
    y = torch.as_tensor(data.train_labels, dtype=torch.long)
    full_left, full_right = (torch.as_tensor(data.inputs[:, i], dtype=torch.long) for i in range(2))
    table = torch.as_tensor(np.asarray(data.eval_labels[0]), dtype=torch.long)
    rng = np.random.default_rng(0)

    def step(i):
        rows = torch.as_tensor(rng.integers(0, len(y), (instances, batch)))
        logits = model(left[rows], right[rows])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[rows].reshape(-1)) * instances
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i % log_every == 0:
            with torch.no_grad():
                pred = model(full_left.expand(instances, -1), full_right.expand(instances, -1)).argmax(-1)
                (pred == table).float().mean(-1)

    step(0)
    t0 = time.perf_counter()
    for i in range(1, steps + 1):
        step(i)
    return instances * steps / (time.perf_counter() - t0)
