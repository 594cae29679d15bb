"""Median seconds of one training step of the default tiny RetinaNet (batch 8, 256 px, channels_last, fp32,
AdamW), on a fixed synthetic batch: a machine-speed check for the default recipe (2600 such steps).

    python tools/step_time.py
"""
import time, torch, statistics
from minidet.models import build_retinanet
torch.manual_seed(0)
m = build_retinanet(num_classes=6, backbone="tiny", octave_base_scale=2.0).to(memory_format=torch.channels_last)
x = torch.rand(8,3,256,256).contiguous(memory_format=torch.channels_last)
tg = [{"boxes": torch.tensor([[10.,10,80,90],[100,120,200,220]]), "labels": torch.tensor([1,2])} for _ in range(8)]
opt = torch.optim.AdamW(m.parameters(), 1e-3)
ts=[]
for i in range(12):
    t=time.perf_counter()
    out = m(x, tg)
    loss = sum(v for k,v in out.items() if k.startswith("loss_"))
    opt.zero_grad(); loss.backward(); opt.step()
    ts.append(time.perf_counter()-t)
print("median step", round(statistics.median(ts[2:]),3))
