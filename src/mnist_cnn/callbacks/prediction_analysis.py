"""From the test predictions that give test/acc: confusion matrix, per-class metrics, PR curves,
top confusions and the misclassified digits."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torchmetrics.functional.classification import (
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)

from mnist_cnn import plots, plots_explain
from mnist_cnn.callbacks import publish


class PredictionAnalysis(L.Callback):
    """The test set's confusion matrix, mistakes, PR curves and per-class table. Needs test_step
    to return {"logits": ...}; the batch gives the images and labels."""

    def __init__(
        self, num_misclassified: int = 12, top_confusions: int = 5, num_attributions: int = 6
    ) -> None:
        self.num_misclassified = num_misclassified
        self.top_confusions = top_confusions
        self.num_attributions = num_attributions  # misread digits explained, pixel by pixel
        self.run_summary: dict = {}

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._probs, self._targets, self._wrong_images = [], [], []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        x, y = batch
        probs = outputs["logits"].float().softmax(dim=1).cpu()
        self._probs.append(probs)
        self._targets.append(y.cpu())
        # keep only the images of mistakes: a handful, not the whole test set
        self._wrong_images.append(x[(probs.argmax(1) != y.cpu()).to(x.device)].float().cpu())

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        probs, targets = torch.cat(self._probs), torch.cat(self._targets)
        wrong_images = torch.cat(self._wrong_images)
        if getattr(trainer, "world_size", 1) > 1:  # every rank's share, in rank order
            device = pl_module.device  # NCCL gathers device tensors, gloo CPU ones
            probs, targets, wrong_images = (
                _gathered(t.to(device)) for t in (probs, targets, wrong_images)
            )
        preds = probs.argmax(1)
        n = probs.shape[1]
        names = list(getattr(trainer.datamodule, "class_names", [str(k) for k in range(n)]))
        cm = multiclass_confusion_matrix(preds, targets, n).numpy()
        step = trainer.global_step
        for errors, suffix in ((False, "counts"), (True, "errors")):
            fig = plots.confusion_matrix(cm, names, errors)
            publish.figure(trainer, f"confusion/{suffix}", fig, step, f"confusion_{suffix}.png")
        top = self._top_confusions(cm, names)
        publish.text(
            trainer,
            "test/top_confusions",
            publish.markdown_table(
                ["count", "true", "predicted as"], [[c["count"], c["true"], c["pred"]] for c in top]
            ),
            step,
        )
        per_class = self._per_class(preds, targets, n, names, cm)
        publish.text(
            trainer,
            "test/per_class",
            publish.markdown_table(
                ["class", "precision", "recall", "f1", "support"],
                [
                    [
                        r["class"],
                        f"{r['precision']:.4f}",
                        f"{r['recall']:.4f}",
                        f"{r['f1']:.4f}",
                        r["support"],
                    ]
                    for r in per_class
                ],
            ),
            step,
        )
        for writer in publish.writers(trainer):
            for k, name in enumerate(names):
                writer.add_pr_curve(f"test/pr_curve/{name}", targets == k, probs[:, k], step)
        wrong = torch.nonzero(preds != targets).flatten()
        self._mistake_grids(trainer, probs, targets, wrong, wrong_images, names, step)
        self._attributions(trainer, pl_module, probs, targets, wrong, wrong_images, names, step)
        self.run_summary = {
            "test/confusion_matrix": cm.tolist(),
            "test/top_confusions": top,
            "test/per_class": per_class,
            "test/misclassified": int(len(wrong)),
            "test/misclassified_indices": wrong.tolist(),  # positions in the test set
        }

    def _top_confusions(self, cm: np.ndarray, names: list[str]) -> list[dict]:
        off = cm.copy()
        np.fill_diagonal(off, 0)
        order = np.argsort(-off, axis=None, kind="stable")[: self.top_confusions]
        pairs = [np.unravel_index(i, cm.shape) for i in order]
        return [
            {"count": int(off[t, p]), "true": names[t], "pred": names[p]}
            for t, p in pairs
            if off[t, p] > 0
        ]

    @staticmethod
    def _per_class(preds, targets, n, names, cm) -> list[dict]:
        scores = {
            "precision": multiclass_precision(preds, targets, n, average=None, zero_division=0),
            "recall": multiclass_recall(preds, targets, n, average=None, zero_division=0),
            "f1": multiclass_f1_score(preds, targets, n, average=None, zero_division=0),
        }
        return [
            {
                "class": names[k],
                **{m: round(float(v[k]), 6) for m, v in scores.items()},  # no float32 noise
                "support": int(cm[k].sum()),
            }
            for k in range(n)
        ]

    def _mistake_grids(self, trainer, probs, targets, wrong, images, names, step) -> None:
        confidence = probs.max(1).values
        k = self.num_misclassified
        first = torch.arange(min(k, len(wrong)))
        confident = torch.argsort(confidence[wrong], descending=True, stable=True)[:k]
        for order, png, tag, title in (
            (
                first,
                "misclassified",
                "first",
                f"First {len(first)} of {len(wrong)} misclassified test digits",
            ),
            (confident, "most_confident_mistakes", "most_confident", "The most confident mistakes"),
        ):
            idx = wrong[order]
            fig = plots.labelled_images(
                images[order].numpy(),
                targets[idx].tolist(),
                probs[idx].argmax(1).tolist(),
                confidence[idx].tolist(),
                names,
                title,
            )
            publish.figure(trainer, f"mistakes/{tag}", fig, step, f"{png}.png")

    def _attributions(self, trainer, pl_module, probs, targets, wrong, images, names, step):
        """Integrated gradients of the first misread digits, toward the answer and the
        runner-up (mnist_cnn.attribution)."""
        from mnist_cnn.attribution import integrated_gradients

        if not self.num_attributions:
            return
        k = min(self.num_attributions, len(wrong))
        net = getattr(pl_module, "net", pl_module)
        top2 = probs[wrong[:k]].topk(2, dim=1).indices if k else torch.zeros(0, 2, dtype=torch.long)
        maps = []
        if k:
            x = images[:k].to(pl_module.device)
            # both answers' paths in one call: one pass over the network for all of them
            both = integrated_gradients(net, torch.cat([x, x]), top2.T.flatten())
            toward, other = both.float().cpu().numpy().reshape(2, k, *x.shape[1:])
            maps = list(zip(toward, other, strict=True))
        fig = plots_explain.attributions(
            images[:k].numpy(), maps, targets[wrong[:k]].tolist(), top2[:, 0].tolist(),
            top2[:, 1].tolist(), names,
        )  # fmt: skip
        publish.figure(trainer, "mistakes/attributions", fig, step, "attributions.png")


def _gathered(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor of every rank, concatenated in rank order (shares may differ in length)."""
    from torchmetrics.utilities.distributed import gather_all_tensors

    return torch.cat([t.cpu() for t in gather_all_tensors(tensor)])
