"""The ``compare`` kind's summary dict, from its rows only: per (model, defence) the clean and robust accuracy per
attack and eps, the per-example worst case over attacks, the rigor checks, certified accuracy, and RobustBench's
leaderboard numbers beside ours."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from art_ext.attacks import rigor
from benchmarks import references
from benchmarks.kinds.compare.schema import GRADIENT_ATTACKS, attack_config, tag_of
from benchmarks.kinds.compare.spec import CertifySpec, CompareSpec, spec_of
from benchmarks.report import binomial_se as se


def worst_case(rows_by_attack: dict[str, dict[int, dict[str, Any]]], clean: dict[int, dict[str, Any]]
               ) -> dict[int, tuple[float, bool]]:
    """Per example: (min over clean and every attack of the correct-draw rate, correct under every draw of every
    attack and of clean). Only examples present in every input count."""
    common_idx = set(clean)
    for by_index in rows_by_attack.values():
        common_idx &= set(by_index)
    out = {}
    for i in sorted(common_idx):
        rates = [clean[i]["rate"], *(by_index[i]["rate"] for by_index in rows_by_attack.values())]
        alls = [clean[i]["all_draws"], *(by_index[i]["all_draws"] for by_index in rows_by_attack.values())]
        out[i] = (min(rates), all(alls))
    return out


def summarize(suite: dict[str, Any] | CompareSpec, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (model, defence): clean, per attack and eps, worst case over attacks per eps, rigor flags, certify."""
    by_config: dict[str, dict[int, dict[str, Any]]] = {}
    for r in rows:
        by_config.setdefault(r["config"], {})[int(r["index"])] = r
    spec = spec_of(suite)
    pairs = []
    for threat in spec.models:
        eps_list = list(threat.eps)
        for defence in spec.defences:
            tag = tag_of(threat.model, defence)
            clean = by_config.get(f"{tag}/clean", {})
            if not clean:
                continue
            n = len(clean)
            clean_mean = float(np.mean([r["rate"] for r in clean.values()]))
            clean_worst = float(np.mean([r["all_draws"] for r in clean.values()]))
            draws = next(iter(clean.values()))["draws"]
            attacks, worst = [], []
            per_eps_attacks: dict[float, dict[str, dict[int, dict[str, Any]]]] = {}
            for attack in spec.attacks_for(defence):
                for eps in eps_list:
                    mine = clean if attack == "none" else by_config.get(attack_config(tag, attack, eps), {})
                    if not mine:
                        continue
                    if attack != "none":
                        per_eps_attacks.setdefault(eps, {})[attack] = mine
                    seconds = [r["seconds"] for r in mine.values() if "seconds" in r]
                    queries = [r["queries"] for r in mine.values() if r.get("queries") is not None]
                    attacks.append({"attack": attack, "eps": eps, "examples": len(mine),
                                    "robust_mean": float(np.mean([r["rate"] for r in mine.values()])),
                                    "robust_worst": float(np.mean([r["all_draws"] for r in mine.values()])),
                                    "seconds_per_example": float(np.mean(seconds)) if seconds else None,
                                    "mean_queries": float(np.mean(queries)) if queries else None})
            for eps in eps_list:
                wc = worst_case(per_eps_attacks.get(eps, {}), clean)
                if wc:
                    worst.append({"eps": eps, "examples": len(wc),
                                  "robust_mean": float(np.mean([v[0] for v in wc.values()])),
                                  "robust_worst": float(np.mean([v[1] for v in wc.values()]))})
            pairs.append({"model": threat.model, "defence": defence, "norm": threat.norm, "eps": eps_list,
                          "examples": n, "draws": draws, "clean_mean": clean_mean, "clean_worst": clean_worst,
                          "attacks": attacks, "worst_case": worst,
                          "rigor": rigor_summary(list(spec.attacks_for(defence)), eps_list,
                                                 by_config.get(f"{tag}/rigor", {}), per_eps_attacks, draws),
                          "certify": certify_summary(spec.certify, by_config.get(f"{tag}/certify", {}))})
    return {"pairs": pairs}


def rigor_summary(attacks_run: list[str], eps_list: list[float], rigor_rows: dict[int, dict[str, Any]],
                  per_eps: dict[float, dict[str, dict[int, dict[str, Any]]]], draws: int) -> dict[str, Any]:
    """The four rigor checks of one (model, defence), from its rows (pure functions of ``art_ext.attacks.rigor``)."""
    if not rigor_rows:
        return {}
    n = len(rigor_rows)
    out: dict[str, Any] = {
        "randomized_fraction": float(np.mean([r["output_differs"] for r in rigor_rows.values()])),
        "grad_zero_fraction": float(np.mean([r["grad_zero"] for r in rigor_rows.values()])),
        "grad_nonfinite_fraction": float(np.mean([r["grad_nonfinite"] for r in rigor_rows.values()])),
        "monotonicity": [], "gradient_free": None,
    }
    # eps monotonicity: every gradient attack's curve when the suite sweeps >= 3 eps, else the PGD probe
    curves: list[tuple[str, list[float], list[float]]] = []
    if len(eps_list) >= 3:
        for attack in attacks_run:
            if attack in GRADIENT_ATTACKS and all(attack in per_eps.get(e, {}) for e in eps_list):
                accs = [float(np.mean([r["rate"] for r in per_eps[e][attack].values()])) for e in eps_list]
                curves.append((attack, eps_list, accs))
    else:
        probes = [r["probe_rates"] for r in rigor_rows.values() if r.get("probe_rates")]
        if probes:
            eps_list = next(r["probe_eps"] for r in rigor_rows.values() if r.get("probe_eps"))
            curves.append(("pgd probe", eps_list, [float(v) for v in np.mean(probes, axis=0)]))
    for name, eps_list, accs in curves:
        tolerance = max(se(a, n) for a in accs) if draws > 1 else 0.0
        check_ = rigor.eps_monotonicity(eps_list, accs, tolerance=tolerance)
        out["monotonicity"].append({"curve": name, "eps": eps_list, "accuracy": accs, "flagged": check_.flagged,
                                    "message": check_.message})
    # gradient-free gap at every eps where NAttack and a gradient attack both ran
    for eps, attacks in per_eps.items():
        grads = [a for a in attacks if a in GRADIENT_ATTACKS]
        if "nattack" not in attacks or not grads:
            continue
        idx = sorted(set.intersection(*(set(attacks[a]) for a in [*grads, "nattack"])))
        key = "all_draws" if draws == 1 else "rate"
        grad_robust = torch.tensor([[attacks[a][i][key] >= 0.5 if key == "rate" else attacks[a][i][key]
                                     for i in idx] for a in grads], dtype=torch.bool)
        free = torch.tensor([attacks["nattack"][i][key] >= 0.5 if key == "rate" else attacks["nattack"][i][key]
                             for i in idx], dtype=torch.bool)
        # a randomized model disagrees with itself by chance: tolerate one SE worth of examples there
        min_examples = 1 if draws == 1 else max(1, math.ceil(math.sqrt(len(idx)) / 2))
        gap = rigor.gradient_free_gap(grad_robust, free, min_examples=min_examples)
        previous = out["gradient_free"]
        if previous is None or gap.count > previous["count"]:
            out["gradient_free"] = {"eps": eps, "count": gap.count, "flagged": gap.flagged, "message": gap.message}
    out["flags"] = rigor_flags(out)
    return out


def rigor_flags(r: dict[str, Any]) -> list[str]:
    flags = []
    if r["randomized_fraction"] > 0:
        flags.append(f"randomized outputs on {r['randomized_fraction']:.0%} of images (scored over k draws)")
    if r["grad_zero_fraction"] > 0 or r["grad_nonfinite_fraction"] > 0:
        flags.append(f"zero input gradient on {r['grad_zero_fraction']:.0%}, NaN/inf on "
                     f"{r['grad_nonfinite_fraction']:.0%} of images")
    for m in r["monotonicity"]:
        if m["flagged"]:
            flags.append(f"{m['curve']}: {m['message']}")
    if r["gradient_free"] and r["gradient_free"]["flagged"]:
        flags.append(f"eps={r['gradient_free']['eps']:g}: {r['gradient_free']['message']}")
    return flags


def certify_summary(cfg: CertifySpec | None, rows: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    if not rows or cfg is None:
        return None
    radii = list(cfg.radii)
    correct = np.array([r["correct"] for r in rows.values()])
    radius = np.array([r["radius"] for r in rows.values()])
    first = next(iter(rows.values()))
    return {"examples": len(rows), "sigma": first["sigma"], "sigma_pixel": first.get("sigma_pixel", first["sigma"]),
            "certified": {f"{r:g}": float(np.mean(correct & (radius >= r))) for r in radii},
            "acr": float(np.mean(np.where(correct, radius, 0.0)))}


def _leaderboard_entry(model: str, norm: str):
    ref = references.parse_model(model)
    if ref.scheme != "robustbench":
        return None
    from art_ext.models.robustbench import leaderboard

    threat = "L2" if norm == "l2" else "Linf"
    if ref.threat != threat:
        return None
    return leaderboard().get(ref.name, dataset=ref.dataset, threat_model=threat)


def leaderboard_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Per model without a defence: our clean / AutoAttack / adaptive (worst over attacks) beside the leaderboard's
    clean and AutoAttack accuracy (same model, threat and eps), differences larger than one SE flagged."""
    out = []
    for pair in summary["pairs"]:
        if pair["defence"] != "none":
            continue
        entry = _leaderboard_entry(pair["model"], pair["norm"])
        for eps in pair["eps"]:
            n = pair["examples"]
            aa = next((a for a in pair["attacks"] if a["attack"] == "autoattack" and a["eps"] == eps), None)
            wc = next((w for w in pair["worst_case"] if w["eps"] == eps), None)
            row: dict[str, Any] = {"model": pair["model"], "eps": eps, "examples": n, "clean": pair["clean_mean"],
                                   "autoattack": aa["robust_mean"] if aa else None,
                                   "adaptive": wc["robust_mean"] if wc else None, "leaderboard": None, "flags": []}
            if entry is not None and math.isclose(entry.eps_value, eps, rel_tol=1e-3):
                row["leaderboard"] = {"clean": entry.clean_acc / 100, "autoattack": entry.autoattack_acc / 100,
                                      "external": None if entry.external is None else entry.external / 100,
                                      "unreliable": entry.unreliable, "additional_data": entry.additional_data,
                                      "commit": entry.commit}
                for key in ("clean", "autoattack"):
                    ours = row[key]
                    if ours is not None and abs(ours - row["leaderboard"][key]) > se(ours, n):
                        row["flags"].append(f"{key} differs by {ours - row['leaderboard'][key]:+.3f} (> 1 SE)")
            out.append(row)
    return out
