"""Small random networks shared by the tests (float64 unless asked otherwise)."""

from __future__ import annotations

import torch
from torch import nn


def mlp(seed: int, d_in: int = 6, hidden: int = 12, d_out: int = 3, act=nn.Tanh,
        dtype=torch.float64) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    m = nn.Sequential(nn.Linear(d_in, hidden), act(), nn.Linear(hidden, hidden), act(),
                      nn.Linear(hidden, d_out))
    for p in m.parameters():
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=g) * 0.7)
    return m.to(dtype).eval()


class SmallCNN(nn.Module):
    def __init__(self, act=nn.Softplus, classes: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.act1 = act()
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.act2 = act()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(24, classes)

    def forward(self, x):
        h = self.act2(self.conv2(self.act1(self.conv1(x))))
        return self.fc(self.pool(h).flatten(1))


def cnn(seed: int, act=nn.Softplus, dtype=torch.float64) -> nn.Module:
    torch.manual_seed(seed)
    return SmallCNN(act).to(dtype).eval()


class Recurrent(nn.Module):
    """Token ids -> embedding -> 2-layer bidirectional LSTM or GRU -> last position -> 3 logits."""

    def __init__(self, cell):
        super().__init__()
        self.emb = nn.Embedding(20, 6)
        self.rnn = cell(6, 5, num_layers=2, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(10, 3)

    def forward(self, ids):
        out, _ = self.rnn(self.emb(ids))
        return self.fc(out[:, -1])


class _TwoOut(nn.Module):
    def forward(self, a, b):
        return torch.tanh(a), torch.sigmoid(b)


class TupleLayer(nn.Module):
    """x -> (tanh(W1 x), sigmoid(W2 x)) from one module ``pair`` -> a linear map of a mix of
    both: a layer of several tensors, followed by a linear map."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.a, self.b, self.pair, self.out = nn.Linear(3, 4), nn.Linear(3, 4), _TwoOut(), \
            nn.Linear(4, 2)

    def forward(self, x):
        p, q = self.pair(self.a(x), self.b(x))
        return self.out(p * 2 + q)
