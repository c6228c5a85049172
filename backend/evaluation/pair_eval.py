"""Held-out preference pairs scored by a reward model: how often it ranks the chosen answer first, and by how much.

The same reading as training (backend.rewards.learned): each answer after its prompt, through the chat
template, one score at the last token. Compared against the starting model with the run's untrained head
(drawn from the same seed), so a rise is what training added.
"""

from __future__ import annotations

from backend.rewards.learned import score_conversations

TEXT_SHOWN = 300


def pair_scores(model, tokenizer, examples: list[dict], cutoff_len: int = 1024) -> tuple[list[float], list[float]]:
    """(chosen scores, rejected scores) of the pairs among examples."""
    pairs = [e for e in examples if "rejected" in e]
    chosen = [e["messages"] for e in pairs]
    rejected = [[*e["messages"][:-1], {"role": "assistant", "content": e["rejected"]}] for e in pairs]
    scores = score_conversations(model, tokenizer, chosen + rejected, cutoff_len)
    return scores[: len(pairs)], scores[len(pairs) :]


def pairwise_metrics(chosen: list[float], rejected: list[float]) -> dict[str, float | None]:
    """accuracy: the share of pairs whose chosen answer scores higher; margin: the mean score difference."""
    if not chosen:
        return {"accuracy": None, "margin": None}
    gaps = [c - r for c, r in zip(chosen, rejected, strict=True)]
    return {"accuracy": sum(g > 0 for g in gaps) / len(gaps), "margin": sum(gaps) / len(gaps)}


def pair_rows(examples: list[dict], tuned: tuple[list, list], base: tuple[list, list]) -> list[dict]:
    """Per pair: the prompt, both answers, and each model's scores of them."""
    pairs = [e for e in examples if "rejected" in e]
    rows = []
    for i, example in enumerate(pairs):
        rows.append(
            {
                "prompt": example["messages"][-2]["content"][:TEXT_SHOWN] if len(example["messages"]) > 1 else "",
                "chosen": example["messages"][-1]["content"][:TEXT_SHOWN],
                "rejected": example["rejected"][:TEXT_SHOWN],
                "score_chosen": round(tuned[0][i], 4),
                "score_rejected": round(tuned[1][i], 4),
                "base_score_chosen": round(base[0][i], 4),
                "base_score_rejected": round(base[1][i], 4),
            }
        )
    return rows
