"""The PyTorch baseline: MLP2 trained the way research code in this field does it today.

Every parameter carries an instance axis and all instances train together:
embeddings are indexed, then batched `einsum`s over instances, full batch,
`torch.optim.Adam` with L2 weight decay on the weights only, and the full-table
accuracy of every instance evaluated every `log_every` epochs. Same init
distributions, optimiser and metric interval as grokjax's default config.
"""

import time

import numpy as np
import torch
import torch.nn.functional as F


class InstancedMLP2(torch.nn.Module):
    def __init__(self, instances: int, n: int, d: int, h: int):
        super().__init__()

        def uniform(*shape, bound):
            return torch.nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))

        self.embed_left = torch.nn.Parameter(torch.randn(instances, n, d))
        self.embed_right = torch.nn.Parameter(torch.randn(instances, n, d))
        self.w_left = uniform(instances, d, h, bound=(2 * d) ** -0.5)
        self.w_right = uniform(instances, d, h, bound=(2 * d) ** -0.5)
        self.w_unembed = uniform(instances, h, n, bound=h**-0.5)
        self.b_unembed = uniform(instances, n, bound=h**-0.5)

    def forward(self, a, b):
        x = torch.einsum("ipd,idh->iph", self.embed_left[:, a], self.w_left)
        x = x + torch.einsum("ipd,idh->iph", self.embed_right[:, b], self.w_right)
        return torch.einsum("iph,ihn->ipn", torch.relu(x), self.w_unembed) + self.b_unembed[:, None, :]


def rate(task, instances: int, d: int, h: int, epochs: int, log_every: int, lr=1e-2, wd=2e-5) -> float:
    """Model-epochs per second of `instances` models trained together for `epochs` (after one warm-up epoch)."""
    torch.manual_seed(0)
    n = task.n
    model = InstancedMLP2(instances, n, d, h)
    weights = [model.embed_left, model.embed_right, model.w_left, model.w_right, model.w_unembed]
    opt = torch.optim.Adam([{"params": weights, "weight_decay": wd}, {"params": [model.b_unembed], "weight_decay": 0.0}],
                           lr=lr, betas=(0.9, 0.98), eps=1e-8)
    a, b = (torch.as_tensor(x) for x in np.divmod(task.train_pairs, n))
    y = torch.as_tensor(task.train_labels, dtype=torch.long).expand(instances, -1)
    full_a, full_b = (torch.as_tensor(x) for x in np.divmod(np.arange(n * n), n))
    tables = torch.as_tensor(np.asarray(task.eval_labels), dtype=torch.long)

    def epoch(i):
        loss = F.cross_entropy(model(a, b).transpose(1, 2), y, reduction="none").mean(1).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i % log_every == 0:
            with torch.no_grad():
                pred = model(full_a, full_b).argmax(-1)
                (pred[:, None, :] == tables[None]).float().mean(-1)

    epoch(0)
    t0 = time.perf_counter()
    for i in range(1, epochs + 1):
        epoch(i)
    return instances * epochs / (time.perf_counter() - t0)
