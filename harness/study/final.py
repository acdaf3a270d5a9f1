"""The final stage: the search's best configurations trained again with fresh seeds; the chosen
configuration is the best mean over its seeds, not the luckiest single trial.

``final.top_k`` best complete trials x ``final.seeds`` seeds (train.seed + k: another head
initialisation and data order), each at the trial's full budget, without pruning. The runs are
the trials of a companion Optuna study in the same storage ("<study>::final"), so they get the
trials' crash safety: heartbeats, stale-run recovery (their MLflow runs ``final-<trial>-seed<k>``
closed as themselves), workers sharing the work. What is missing is queued again on the next
run; a finished stage does nothing; configurations newly in the top-k (more trials) are run.
Only once every run has ended is the choice made, and only then is the test split scored, on
the chosen configuration's seeds. Its best seed's checkpoint becomes the study's ``best``.

The recipe (``harness.study.enqueued``: what a careful user would train without a search) is
trained too, with the same seeds, unless ``final.recipe=false``: it competes in the choice
(the search never ships worse on validation than the recipe), its test score is taken after
the choice like the chosen configuration's, and the record keeps the chosen configuration's
gain over it, seed by seed (the same seed: the same head initialisation and data order).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from harness.base import faults, interrupts
from harness.base.errors import ConfigError
from harness.base.progress import StudyProgress
from harness.config import settings
from harness.records import final as final_record
from harness.records import schema, trials
from harness.study import combine
from harness.study.enqueued import Params
from harness.study.lock import study_lock
from harness.study.objective import FineTune, Objective
from harness.study.retention import StudyCheckpoints
from harness.train.scoring import has_labels, score_checkpoint

if TYPE_CHECKING:
    from pathlib import Path

    from omegaconf import DictConfig

    from harness.records.tracker import Tracker
    from harness.study.recovery import Recovery
    from harness.study.setup import Prepared
    from harness.study.workers import FinalHelpers

log = logging.getLogger(__name__)

Wanted = tuple[int, Params, int]  # a final run: (the search trial it re-runs, its params, seed)
FinalRecord = final_record.FinalRecord


class FinalObjective(Objective):
    """A final-stage run: the configuration of the trial it re-runs (enqueued as fixed params),
    another seed, no pruning, its checkpoint kept until the choice."""

    prunes = False

    def _configure(self, trial: optuna.Trial) -> tuple[DictConfig, Params]:
        trial_cfg, values = super()._configure(trial)
        trial_cfg.train.seed = int(self.cfg.train.seed) + self._seed(trial)
        return trial_cfg, values

    def _init_seed(self, trial: optuna.Trial) -> int | None:
        """final.vary=data_order: every seed starts from the same weights (the search's)."""
        if settings(self.cfg, "final").vary == "data_order":
            return int(self.cfg.train.seed)
        return None

    def _number(self, trial: optuna.Trial | FrozenTrial) -> int:
        return trials.final_key(trial)[0]

    def _seed(self, trial: optuna.Trial | FrozenTrial) -> int:
        return trials.final_key(trial)[1]

    def after_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.recorded(trial)
        self._end_run(trial)
        self.progress.trial_finished(trial.state == TrialState.COMPLETE, None)


def recipe_source(study: optuna.Study) -> tuple[int, Params] | None:
    """The recipe as the final stage trains it: (its search trial's number, its params), or
    None for a study without one. Its trial is the one that reached the furthest (a completed
    one: the same configuration as a top-k candidate, not trained twice)."""
    params = study.user_attrs.get(schema.RECIPE_ATTR)
    if params is None:
        return None
    marked = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get(schema.ENQUEUED_ATTR) == schema.RECIPE_MARK
    ]
    if not marked:
        return None
    rank = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1}
    best = min(marked, key=lambda t: (rank.get(t.state, 2), -t.number))
    return best.number, dict(params)


def check_resumed(study: optuna.Study | None, cfg: DictConfig) -> None:
    """A ConfigError (nothing trained) when a study whose final stage has chosen is resumed with
    ``final.seeds`` or ``final.vary`` changed: the seeds it ran are what its configurations'
    means and its kept checkpoints were made of, so the choice could not be made again
    consistently. Everything else under ``final`` is honoured on a resume (more top-k
    configurations are trained; ``combine`` and ``ensemble_size`` decide again)."""
    if study is None:
        return
    earlier = final_record.record(study)
    if not earlier or earlier.get("skipped") or "seeds" not in earlier:
        return
    now = settings(cfg, "final")
    for field, then, given in (
        ("seeds", earlier["seeds"], now.seeds),
        ("vary", earlier.get("vary", "all"), now.vary),
    ):
        if given != then and now.seeds != 0:
            raise ConfigError(
                f"final.{field}",
                f"study '{study.study_name}' made its final choice with "
                f"final.{field}={then}, not {given}: resume it with final.{field}={then} "
                "(or final.seeds=0 to skip the final stage), or start a new study "
                "(study.name=NEW_NAME)",
            )


def final_store(cfg: DictConfig) -> StudyCheckpoints:
    """The final-stage runs' checkpoints: ``<study.output_dir>/final/checkpoints/run-N``."""
    return StudyCheckpoints(f"{cfg.study.output_dir}/final", None, label="run")


@dataclass(frozen=True)
class FinalInputs:
    """What the final stage takes from the search (it writes nothing back)."""

    cfg: DictConfig
    study: optuna.Study  # the search's
    prepared: Prepared  # the data, base model and metrics every run shares
    tracker: Tracker
    store: StudyCheckpoints  # the search's checkpoints: ``best`` is linked to the choice
    recovery: Recovery  # fails and closes the companion study's stale runs too
    search_progress: StudyProgress  # the search's bar: ends where the final stage's begins
    finetune: FineTune | None = None  # what trains a run (None: the real fine-tune)
    helpers: FinalHelpers | None = None  # final.workers: who starts them (a lone command line)


@dataclass(frozen=True)
class FinalResult:
    """What the final stage did: the record it saved (the study's ``harness.final``), or None
    when it chose nothing this time (``final.seeds=0``, no complete trial, a run missing, or
    another worker still training)."""

    record: FinalRecord | None = None

    @property
    def chosen(self) -> int | None:
        """The search trial whose configuration was chosen (None: none was)."""
        trial = (self.record or {}).get("trial")
        return None if trial is None else int(trial)


class FinalStage:
    """Runs (or finishes) the final stage of a study after its search: ``run()`` returns a
    :class:`FinalResult`. While its runs train, ``running`` is (the companion study, its
    objective): what Ctrl-C records as interrupted."""

    def __init__(self, given: FinalInputs, helper: bool = False) -> None:
        self.given, self.cfg, self.study = given, given.cfg, given.study
        self.helper = helper  # a final.workers helper: trains queued runs, chooses nothing
        self.store = final_store(self.cfg)
        self.settings = settings(self.cfg, "final")
        self.max_retries = self.cfg.study.max_retries
        self.recipe: tuple[int, Params] | None = None  # (its trial, its params)
        self.running: tuple[optuna.Study, FinalObjective] | None = None
        self.saved: FinalRecord | None = None  # the record as saved

    def run(self) -> FinalResult:
        self._run()
        return FinalResult(self.saved)

    def _run(self) -> None:
        if self.settings.seeds == 0:
            return
        if len(self.study.directions) > 1:
            self._save(
                {
                    "skipped": "a two-objective study has no single best configuration; "
                    "see its Pareto front"
                }
            )
            return
        top = trials.ranked(self.study)[: self.settings.top_k]
        if not top:
            return
        self.companion = optuna.create_study(
            study_name=trials.final_study_name(self.study.study_name),
            storage=self.study._storage,
            sampler=optuna.samplers.RandomSampler(),
            pruner=optuna.pruners.NopPruner(),
            direction=self.study.direction,  # one objective: the search's
            load_if_exists=True,
        )
        self.given.recovery.recover(self.companion)
        candidates = [(t.number, dict(t.params)) for t in top]
        self.recipe = recipe_source(self.study) if self.settings.recipe else None
        if self.recipe is not None and self.recipe[0] not in {n for n, _ in candidates}:
            candidates.append(self.recipe)
        incumbent = self._incumbent()
        if incumbent is not None and incumbent[0] not in {n for n, _ in candidates}:
            candidates.append(incumbent)  # what ships now competes until something beats it
        wanted = [
            (number, params, k)
            for number, params in candidates
            for k in range(1, self.settings.seeds + 1)
        ]
        self._queue_missing(wanted)
        done = sum(
            1
            for key in self._runs(TrialState.COMPLETE)
            if key in {(number, k) for number, _, k in wanted}
        )
        if done < len(wanted):
            what = f"the {len(top)} best configuration(s)" + (
                " and the recipe" if len(candidates) > len(top) else ""
            )
            self._train(wanted, done, what)
        if self.helper:
            return
        if not self._runs(TrialState.RUNNING, TrialState.WAITING):
            # once per study at a time: two workers ending together choose one after the other
            # (the second finds the first's record and keeps its test scores and ensemble)
            with study_lock(self.study._storage, self.study.study_name, "final"):
                self._choose([number for number, _ in candidates])

    # ------------------------------------------------------------------ the runs

    def _runs(self, *states: TrialState) -> dict[tuple[int, int], FrozenTrial]:
        """(trial, seed) -> the companion trial in one of ``states`` (the first of each)."""
        runs: dict[tuple[int, int], FrozenTrial] = {}
        for trial in self.companion.get_trials(deepcopy=False, states=states):
            if schema.FINAL_TRIAL_ATTR in trial.user_attrs:
                runs.setdefault(trials.final_key(trial), trial)
        return runs

    def _incumbent(self) -> tuple[int, Params] | None:
        """The configuration the study ships so far (its earlier choice): (trial, params)."""
        earlier = final_record.record(self.study) or {}
        if earlier.get("trial") is None:
            return None
        trial = next(
            (t for t in self.study.get_trials(deepcopy=False) if t.number == int(earlier["trial"])),
            None,
        )
        return None if trial is None else (trial.number, dict(trial.params))

    def _queue_missing(self, wanted: list[Wanted]) -> int:
        """Queue the runs that are not complete, queued or running, and have not failed more
        than ``study.max_retries`` times; returns how many were queued. Under the study's lock:
        two workers arriving together queue each run once."""
        with study_lock(self.study._storage, self.study.study_name, "final-queue"):
            return self._queue_missing_locked(wanted)

    def _queue_missing_locked(self, wanted: list[Wanted]) -> int:
        present = self._runs(TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
        failures: dict[tuple[int, int], int] = {}
        for trial in self.companion.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
            if schema.FINAL_TRIAL_ATTR in trial.user_attrs:
                key = trials.final_key(trial)
                failures[key] = failures.get(key, 0) + 1
        faults.hit("queue")
        queued = 0
        for number, params, seed in wanted:
            key = (number, seed)
            if key in present or (
                self.max_retries is not None and failures.get(key, 0) > self.max_retries
            ):
                continue
            attrs: dict[str, Any] = {schema.FINAL_TRIAL_ATTR: number, schema.FINAL_SEED_ATTR: seed}
            if self.recipe is not None and number == self.recipe[0]:
                attrs[schema.ENQUEUED_ATTR] = schema.RECIPE_MARK  # marked on its runs too
            self.companion.enqueue_trial(params, user_attrs=attrs)
            queued += 1
        return queued

    def _train(self, wanted: list[Wanted], done: int, what: str) -> None:
        cfg, given = self.cfg, self.given
        given.search_progress.close()  # the search's bar ends where the final stage's begins
        progress = StudyProgress(
            len(wanted),
            done,
            cfg.study.metric,
            enabled=bool(cfg.display.progress),
            desc="final runs",
        )
        objective = FinalObjective(
            given.prepared, given.tracker, self.store, progress, finetune=given.finetune
        )
        self.running = (self.companion, objective)  # what Ctrl-C records as interrupted
        if not self.helper:
            log.info(
                "final stage: %d of %d runs to train (%s x %d seeds)",
                len(wanted) - done,
                len(wanted),
                what,
                self.settings.seeds,
            )
        keys = {(number, k) for number, _, k in wanted}
        helpers = given.helpers  # None in a helper
        interrupted = True  # until the loop ends: the helpers are stopped, not waited for
        try:
            if helpers is not None:
                helpers.start(cfg, len(wanted) - done)
            while True:
                interrupts.check()
                progress.set_finished(len(keys & set(self._runs(TrialState.COMPLETE))))
                counts = trials.count(self.companion)
                if not counts["waiting"]:
                    if counts["running"]:  # another worker's: wait for it (or recover it)
                        time.sleep(min(5.0, float(cfg.study.heartbeat_interval)))
                        given.recovery.check_stale(self.companion)
                        continue
                    if not self._queue_missing(wanted):
                        break
                try:
                    self.companion.optimize(
                        objective,
                        n_trials=1,
                        catch=(Exception,),
                        callbacks=[objective.after_trial],
                        gc_after_trial=True,
                    )
                except ValueError:  # "Cannot tell a FAIL trial": another worker took it over
                    if objective.taken_over is None:
                        raise
                    objective.taken_over = None
            interrupted = False
        finally:
            if helpers is not None:  # before the choice: every helper's run closed
                helpers.stop(interrupted)
            progress.close()
        self.running = None

    # ------------------------------------------------------------------ the choice

    def _choose(self, candidates: list[int]) -> None:
        """The best mean over seeds; its best seed becomes ``best``; then (only then) the test
        split, on the chosen configuration's seeds and the recipe's; the other runs'
        checkpoints removed."""
        runs = self._runs(TrialState.COMPLETE)
        sign = 1 if trials.direction(self.study) == "maximize" else -1
        recipe = self.recipe[0] if self.recipe is not None else None
        by_number = {t.number: t for t in self.study.get_trials(deepcopy=False)}
        configs: dict[str, FinalRecord] = {}
        seeds_of: dict[int, dict[int, FrozenTrial]] = {}
        for number in candidates:
            seeds = {
                k: runs[(number, k)]
                for k in range(1, self.settings.seeds + 1)
                if (number, k) in runs
            }
            if not seeds:
                continue
            source = by_number[number]
            mean, sd = final_record.mean_sd([trials.study_value(t) for t in seeds.values()])
            configs[str(number)] = {
                "mean": mean,
                "sd": sd,
                "trial_value": (
                    trials.study_value(source) if source.state == TrialState.COMPLETE else None
                ),  # the recipe's search trial may have paused
                "method": source.params.get(schema.METHOD_PARAM),  # a methods study's
                "recipe": number == recipe,
                "values": {str(k): trials.study_value(t) for k, t in seeds.items()},
            }
            seeds_of[number] = seeds
        if not configs:
            log.warning("final stage: no run completed; the best trial stays the study's best")
            return
        best_seed = {
            n: max(seeds_of[int(n)].items(), key=lambda item: sign * trials.study_value(item[1]))
            for n in configs
        }
        # a configuration whose best seed's checkpoint went (removed when another configuration
        # was chosen before this study was extended) cannot ship: it is not eligible
        for n in configs:
            if not self.store.path(best_seed[n][1].number).is_dir():
                configs[n]["eligible"] = False
                log.warning(
                    "final stage: trial %s's configuration (mean %s %.4f) is not "
                    "eligible: its best seed's checkpoint was removed when another "
                    "configuration was chosen",
                    n,
                    self.cfg.study.metric,
                    configs[n]["mean"],
                )
        eligible = [n for n in configs if configs[n].get("eligible", True)]
        if not eligible:
            log.warning("final stage: no configuration has its checkpoint; nothing changes")
            return
        # ties: the search's better trial, the recipe last
        order = {n: i for i, n in enumerate(candidates)}
        chosen = max(eligible, key=lambda n: (sign * configs[n]["mean"], -order[int(n)]))
        seed, best_run = best_seed[chosen]
        record = {
            "trial": int(chosen),
            "seed": seed,
            "configs": configs,
            "seeds": self.settings.seeds,
            "vary": self.settings.vary,
            "seed_value": trials.study_value(best_run),
            "run_id": best_run.user_attrs.get(schema.RUN_ID_ATTR),
            "checkpoint": str(self.store.path(best_run.number).relative_to(self.store.root.parent)),
        }
        earlier = final_record.record(self.study) or {}
        # what ships (the seed, a soup, an ensemble): chosen on validation before any test score
        kind, combined = self._combine(record, earlier)
        same = (earlier.get("trial"), earlier.get("configs", {}).get(chosen, {}).get("values"))
        if same == (record["trial"], configs[chosen]["values"]) and earlier.get("test"):
            record["test"] = earlier["test"]  # scored once: a rerun does not score again
        else:
            record["test"] = self._test(seeds_of[int(chosen)])  # after what ships is chosen
        if self.recipe is not None and str(self.recipe[0]) in configs:
            record["recipe"] = self._recipe_record(self.recipe, configs, seeds_of, earlier, record)
        record["ships"], record["combine"] = kind, self.settings.combine
        if combined is not None:
            record[kind] = combined
        self._save(record)
        if kind == "ensemble" and combined is not None:
            combine.write_folder(combined, self.store.root.parent, self.store.root)
        elif kind != "soup":
            shutil.rmtree(self.store.root / combine.SOUP_DIR, ignore_errors=True)
        self._keep_only(best_run, combine.member_folders(record, self.store.root.parent))

    def _combine(self, record: FinalRecord, earlier: FinalRecord) -> tuple[str, FinalRecord | None]:
        """What the study ships (``final.combine``): ("seed", None), ("ensemble", its record)
        or ("soup", its record). Chosen on validation; its test score taken after (once: a
        rerun that finds the same choice keeps it, and its test score)."""
        mode = self.settings.combine
        if mode == "best":
            return "seed", None
        chosen = str(record["trial"])
        record["pool"] = pool = self._pool()
        same = (
            earlier.get("trial") == record["trial"]
            and earlier["configs"].get(chosen, {}).get("values")
            == record["configs"][chosen]["values"]
        )
        if same and earlier.get("combine") == mode and earlier.get("pool") == pool:
            kind = earlier.get("ships", "seed")  # nothing new trained: what ships stands
            return kind, earlier.get(kind)
        # the same choice with new models trained (an extended study) or another mode: the
        # ensemble is selected again; a soup that shipped stands as it was made (its other
        # seeds went once it shipped)
        output_dir = self.store.root.parent
        validation = self.given.prepared.datasets["validation"]
        metric, metrics = str(self.cfg.study.metric), self.given.prepared.metrics
        maximize = trials.direction(self.study) == "maximize"
        found = combine.candidates(self.study, self.companion, output_dir, self.store.root)
        ensemble = soup = None
        if mode in ("ensemble", "auto"):
            ensemble = combine.select(
                self.settings.ensemble_size,
                found,
                list(validation["label"]),
                metrics,
                metric,
                maximize,
                output_dir,
            )
        if mode in ("soup", "auto") and same and earlier.get("soup"):
            soup = earlier["soup"]
        elif mode in ("soup", "auto"):
            seeds = [c for c in found if c.name.startswith(f"final-{chosen}-seed")]
            soup = combine.greedy_soup(
                seeds, validation, metrics, metric, maximize, output_dir, self.store.root
            )
        kind = combine.decide(mode, record["seed_value"], maximize, ensemble, soup)
        log.info(
            "final stage (final.combine=%s): validation %s of the chosen seed %.4f%s%s; "
            "ships the %s",
            mode,
            metric,
            record["seed_value"],
            f", the ensemble {ensemble['val']:.4f} ({combine.describe(ensemble)})"
            if ensemble
            else "",
            f", the soup {soup['val']:.4f} ({', '.join(soup['members'])})" if soup else "",
            kind,
        )
        combined = {"ensemble": ensemble, "soup": soup}.get(kind)
        if combined is None:
            return "seed", None
        if kind == "ensemble":
            combined["folder"] = f"{self.store.root.name}/{combine.ENSEMBLE_DIR}"
        if "test" in combined:  # the soup as it was made, scored then
            return kind, combined
        split = self.given.prepared.datasets.get("test")
        if split is not None and has_labels(split):  # the choice is made: now the test split
            combined["test"] = combine.test_score(combined, output_dir, split, metrics, metric)
        return kind, combined

    def _pool(self) -> list[str]:
        """Every model the study has trained to the end (its complete search trials and final
        runs): when it grows, what ships is combined again, once."""
        names = {
            f"trial-{t.number}"
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        }
        names |= {
            "final-{}-seed{}".format(*trials.final_key(t))
            for t in self.companion.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if schema.FINAL_TRIAL_ATTR in t.user_attrs
        }
        return sorted(names)

    def _recipe_record(
        self,
        source: tuple[int, Params],
        configs: dict[str, FinalRecord],
        seeds_of: dict[int, dict[int, FrozenTrial]],
        earlier: FinalRecord,
        record: FinalRecord,
    ) -> FinalRecord:
        """The recipe's seeds, scored on test like the chosen configuration's (once), and the
        chosen configuration's gain over it on the seeds both completed."""
        recipe, params = source
        mine = configs[str(recipe)]
        out: FinalRecord = {
            "trial": recipe,
            "params": params,
            "mean": mine["mean"],
            "sd": mine["sd"],
            "values": mine["values"],
        }
        if record["trial"] == recipe:
            out["test"] = record["test"]
        elif (
            (earlier.get("recipe") or {}).get("values") == mine["values"]
            and (earlier.get("recipe") or {}).get("test")
            and earlier.get("test") == record["test"]
        ):
            out["test"] = earlier["recipe"]["test"]  # scored once
        else:
            out["test"] = self._test(seeds_of[recipe])
        chosen = configs[str(record["trial"])]
        out["gain"] = {"val": final_record.paired_gain(chosen["values"], mine["values"])}
        tests = (record["test"] or {}).get("values"), (out["test"] or {}).get("values")
        if tests[0] and tests[1]:
            out["gain"]["test"] = final_record.paired_gain(tests[0], tests[1])
        return out

    def _test(self, seeds: dict[int, FrozenTrial]) -> FinalRecord:
        split = self.given.prepared.datasets.get("test")
        if split is None:
            return {"none": "the data has no test split"}
        if not has_labels(split):
            return {"none": "the test split is unlabelled"}
        metric, values = str(self.cfg.study.metric), {}
        for seed, run in seeds.items():
            path = self.store.path(run.number)
            if not path.is_dir():
                continue
            scores = score_checkpoint(path, split, self.given.prepared.metrics)
            values[str(seed)] = scores[metric]
            view = self.given.tracker.run(run.user_attrs.get(schema.RUN_ID_ATTR))
            if view is not None:
                self.given.tracker.log_run_metrics(
                    view.run_id, {f"{schema.TEST_PREFIX}{k}": v for k, v in scores.items()}
                )
        if not values:
            return {"none": "not scored: the seeds' checkpoints were removed"}
        mean, sd = final_record.mean_sd(list(values.values()))
        return {"values": values, "mean": mean, "sd": sd}

    def _save(self, record: FinalRecord) -> None:
        earlier = final_record.record(self.study)
        self.study.set_user_attr(schema.FINAL_ATTR, record)
        self.saved = record
        metrics = final_record.parent_metrics(record, str(self.cfg.study.metric), earlier)
        if metrics:
            self.given.tracker.log_run_metrics(self.given.tracker.parent_run_id, metrics)

    def _keep_only(self, best_run: FrozenTrial, members: set[Path]) -> None:
        """Local: only the chosen seed's checkpoint stays, and an ensemble's members (``best``
        points at the one or the other); MLflow (checkpoints.mlflow=kept): the other final runs
        lose theirs."""
        if not self.store.path(best_run.number).is_dir():  # never lose the only model
            log.error("final stage: the chosen run's checkpoint is missing; nothing removed")
            return
        for folder in self.store.kept_dir.glob("run-*"):
            if folder != self.store.path(best_run.number) and folder.resolve() not in members:
                shutil.rmtree(folder, ignore_errors=True)
        self.given.store.remove_unkept(self.study)  # links best to the choice
        if self.cfg.checkpoints.mlflow != "kept":
            return
        tracker = self.given.tracker
        for run in self.companion.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            run_id = run.user_attrs.get(schema.RUN_ID_ATTR)
            kept = run.number == best_run.number or (
                self.store.path(run.number).resolve() in members
            )
            if run_id and not kept and tracker.has_checkpoint(run_id):
                tracker.delete_checkpoint(run_id, "removed: not the chosen seed")
