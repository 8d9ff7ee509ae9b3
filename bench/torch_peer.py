"""The PyTorch peer of `bench/rnn_throughput.py`: `nn.LSTM` over padded batches, as a user would
write it in PyTorch, timed the way the Keras peers are (one warm-up epoch, then timed epochs).

`nn.LSTM` has no recurrent (state) dropout; the peer drops its inputs and outputs with
`nn.Dropout(1 - keep)`, takes the output at each sequence's last real step and a linear head,
Adam, cross-entropy from logits, shuffled batches of the padded [N, 200, 32] workload. It runs
in its own process (TensorFlow and PyTorch keep their thread pools apart), importing numpy and
torch only:

    python bench/torch_peer.py DATA.npz EPOCHS BATCH UNITS KEEP SEED

prints one JSON line {"sequences_per_second" (the fastest timed epoch's), "epoch_rates", "loss",
"threads", "torch"}. DATA.npz holds x
float32 [N, T, D], lengths int [N], labels int [N]. torch is the optional `bench-torch` extra.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np


def main(argv) -> int:
    path, epochs, batch, units, keep, seed = argv[0], int(argv[1]), int(argv[2]), int(argv[3]), float(argv[4]), int(argv[5])
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(os.cpu_count() or 1)
    data = np.load(path)
    x = torch.from_numpy(data["x"])
    lengths = torch.from_numpy(data["lengths"].astype(np.int64))
    labels = torch.from_numpy(data["labels"].astype(np.int64))
    classes = int(labels.max()) + 1

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.drop_in = torch.nn.Dropout(1.0 - keep)
            self.lstm = torch.nn.LSTM(x.shape[-1], units, batch_first=True)
            self.drop_out = torch.nn.Dropout(1.0 - keep)
            self.head = torch.nn.Linear(units, classes)

        def forward(self, xb, lb):
            outputs, _ = self.lstm(self.drop_in(xb))  # [B, T, units], every padded step computed
            last = outputs[torch.arange(xb.shape[0]), lb - 1]  # the last real step's output
            return self.head(self.drop_out(last))

    model = Model()
    optimizer = torch.optim.Adam(model.parameters())
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)

    def epoch() -> float:
        model.train()
        order = torch.randperm(len(x), generator=generator)
        loss = torch.tensor(float("nan"))
        for start in range(0, len(order) - batch + 1, batch):
            idx = order[start:start + batch]
            optimizer.zero_grad()
            loss = loss_fn(model(x[idx], lengths[idx]), labels[idx])
            loss.backward()
            optimizer.step()
        return float(loss.detach())

    epoch()  # warm-up, as the other rows
    full_batches = len(x) // batch * batch
    rates = []
    for _ in range(epochs):  # each epoch timed on its own: the row is its fastest (as the others)
        started = time.perf_counter()
        loss = epoch()
        rates.append(full_batches / (time.perf_counter() - started))
    print(json.dumps({"sequences_per_second": max(rates), "epoch_rates": rates, "loss": loss,
                      "threads": torch.get_num_threads(), "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
