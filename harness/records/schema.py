"""Every name the harness writes into a study's records, defined once.

Optuna holds the study (its user attributes and each trial's); MLflow is a view of it (tags,
params, metrics and artifacts of one parent run per study and one child run per trial). Code and
tests read and write these names only through the constants below.
"""

from __future__ import annotations

# ---------------------------------------------------------------- Optuna: study user attributes
FINGERPRINT_ATTR = "harness.fingerprint"  # the settings that define the study (resume check)
PARENT_RUN_ATTR = "mlflow_parent_run_id"  # the study's MLflow parent run
SLOT_ATTR_PREFIX = "harness.slot."  # harness.slot.<k>: the process holding sampler slot k
STUDY_UID_ATTR = "harness.study_uid"  # the study's identity, also tagged on its parent run
INPUTS_ATTR = "harness.inputs"  # what the trials train on: each data split's and the model's id
WARM_START_ATTR = "harness.warm_start"  # the warm start queued: {name, storage, top_k}
FINAL_ATTR = "harness.final"  # the final stage's choice: configuration, seeds, means, test
# The final stage's runs are the trials of a companion study in the same storage, named
# "<study>" + FINAL_STUDY_SUFFIX; each carries the trial it re-runs and its seed (1, 2, …).
FINAL_STUDY_SUFFIX = "::final"
FINAL_TRIAL_ATTR = "harness.final.trial"
FINAL_SEED_ATTR = "harness.final.seed"
RECIPE_ATTR = "harness.recipe"  # the recipe queued as the study's first trial: its params
# A paused configuration whose saved training state was removed (over checkpoints.paused_gb):
# "harness.dropped.<trial number>" -> why. One key per trial, so that workers never overwrite
# each other's record.
DROPPED_ATTR_PREFIX = "harness.dropped."

# ---------------------------------------------------------------- Optuna: trial user attributes
WORKER_ATTR = "worker"  # a running trial's process: {host, boot, pid}
SAMPLER_SEED_ATTR = "sampler_seed"  # the seed of the sampler of the process that ran the trial
DEVICES_ATTR = "harness.devices"  # what trained it: {gpus, threads, world_size} (base.devices)
ERROR_ATTR = "error"  # a failed trial: "ErrorClass: message"
INTERRUPTED_ATTR = "interrupted"  # why a trial was stopped (signal, dead process)
RUN_ID_ATTR = "mlflow_run_id"  # the trial's MLflow child run
TRAINABLE_PARAMS_ATTR = "trainable_params"
STEPS_TRAINED_ATTR = "steps_trained"  # optimizer steps the trial trained
BEST_SO_FAR_ATTR = "best_value"  # a pruned trial's best study-metric value before it stopped
TRAIN_RUNTIME_ATTR = "train_runtime_s"  # seconds inside Trainer.train
OVERHEAD_ATTR = "overhead_s"  # the trial's wall time outside training and evaluation
COMPUTE_ATTR = "compute"  # what the trial cost: {COMPUTE_METRICS name: value}
# a queued trial: "manual", "recipe" or "warm_start:<study>#<trial>"
ENQUEUED_ATTR = "harness.enqueued"
RECIPE_MARK = "recipe"  # ENQUEUED_ATTR of the recipe's trial
# The promotion scheduler (pruner=promotion): a trial below the cut at a rung is paused (PRUNED
# with PAUSED_ATTR, its training state saved); a promoted one continues in a new trial that
# records the trial it continues and its configuration (the first trial's number).
PAUSED_ATTR = "harness.paused"  # {"evaluation": rung, "step": global step, "state": folder}
CONTINUES_ATTR = "harness.continues"  # the paused trial this one continues from its weights
CONFIG_ATTR = "harness.config"  # the configuration's first trial (absent: the trial itself)
TO_END_ATTR = "harness.to_end"  # a promotion that trains to the full budget, never paused again
# study.resume_trials: a trial stopped by a signal with its training state saved (FAIL, with
# INTERRUPTED_ATTR): {"evaluation": evaluations reported, "step": global step, "state": folder}.
# Its configuration goes on in a new trial with CONTINUES_ATTR = its number.
INTERRUPTED_STATE_ATTR = "harness.interrupted_state"

# ---------------------------------------------------------------- Optuna: params
METHOD_PARAM = "method"  # a methods study's fine-tuning method (its params are "<method>/<path>")

# ---------------------------------------------------------------- MLflow: tags
ROLE_TAG = "harness.role"  # on every run: ROLE_STUDY (parent) or ROLE_TRIAL (child)
ROLE_STUDY = "study"
ROLE_TRIAL = "trial"
ROLE_FINAL = "final"  # a final-stage run: final-<trial>-seed<k>, tagged with NUMBER_TAG too
FINAL_SEED_TAG = "harness.final.seed"
PARENT_EXPERIMENT_TAG = "harness.parent_run_id"  # experiment tag: the study's parent run
PARENT_RUN_TAG = "mlflow.parentRunId"  # MLflow's own nesting tag
STUDY_NAME_TAG = "optuna.study_name"
STUDY_UID_TAG = "harness.study_uid"  # parent run: the Optuna study it belongs to (its uid)
STORAGE_TAG = "optuna.storage"  # parent run: the study's storage (password masked)
STUDY_ID_TAG = "optuna.study_id"  # parent run: the study's id in that storage
NUMBER_TAG = "optuna.trial_number"
# the Optuna trial's id in its storage: one run per attempt (a final-stage run retried after a
# crash is a new trial of the companion study with the same trial number and seed tags)
TRIAL_ID_TAG = "optuna.trial_id"
STATE_TAG = "optuna.state"  # the trial's Optuna state (RUNNING, COMPLETE, PRUNED, FAIL)
ERROR_TAG = "error"  # a failed trial's error (or why it was interrupted)
ERROR_TYPE_TAG = "error_type"
CHECKPOINT_TAG = "checkpoint"  # why a run's checkpoint artifact was removed
PRECISION_TAG = "precision"  # what a trial trained in: fp32, bf16 or fp16
ENQUEUED_TAG = ENQUEUED_ATTR  # a queued trial's run: where its params came from
PAUSED_TAG = "harness.paused"  # a paused trial's run: where it paused, and whether it went on
STATE_SAVED_TAG = "harness.state_saved"  # an interrupted trial's run: where its state was saved
CONTINUES_TAG = "harness.continues"  # a continuation's run: the trial (and run) it continues
CONTINUED_BY_TAG = "harness.continued_by"  # a paused trial's run, once continued
FINISHED_TAG = "optuna.n_trials_finished"  # parent run: trials finished so far
BEST_TRIAL_TAG = "best_trial"  # parent run: the best trial's number ("best_trial.<method>")
BEST_VALUE_TAG = "best_value"
BEST_RUN_TAG = "best_run_id"
BEST_PARAM_PREFIX = "best."  # parent run: the best trial's params
DESCRIPTION_TAG = "mlflow.note.content"  # parent run: the study in a few lines (its description)

# Optuna's trial states → MLflow run statuses. A trial stopped by Ctrl-C / SIGTERM is FAIL in
# Optuna and KILLED in MLflow; one that raised, or whose worker died, is FAILED.
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}

# ---------------------------------------------------------------- MLflow: metrics
VAL_PREFIX = "val_"  # curves: val_<metric> at every evaluation
BEST_VAL_PREFIX = "best_val_"  # a trial's metrics at its best evaluation
BEST_VALUE_METRIC = "best_value"  # parent run: best value against trials finished
TEST_PREFIX = "test_"  # the chosen configuration's seed runs: metrics on the test split
# parent run: the final stage's chosen configuration ("final_val_accuracy_mean", …)
FINAL_METRIC = "final_{split}_{metric}_{stat}"
FINAL_TRIAL_METRIC = "final_trial"
# parent run: the recipe's seed runs ("recipe_test_accuracy_mean", …) and the chosen
# configuration's paired gain over it, seed by seed ("final_test_accuracy_gain_mean", …)
RECIPE_METRIC = "recipe_{split}_{metric}_{stat}"
GAIN_METRIC = "final_{split}_{metric}_gain_{stat}"
# what the study ships (final.combine: the chosen seed, or an ensemble): its scores, and its test
# score minus the recipe's test mean
SHIPPED_METRIC = "shipped_{split}_{metric}"
SHIPPED_GAIN_METRIC = "shipped_test_{metric}_gain"
# Metric histories that make a trial's curve (MetricsLogger's): a continuation's run starts
# with those of the run it continues, so that it reads as one curve from the first step.
CURVE_METRICS = ("train_loss", "learning_rate", "grad_norm", "epoch")
TRIALS_PREFIX = "trials_"  # parent run: trials_complete, trials_pruned, trials_failed
STEPS_TRAINED_METRIC = "steps_trained"
WALL_TIME_METRIC = "wall_time_s"
OVERHEAD_METRIC = "overhead_s"
# A trial's compute (metrics of its run, and its COMPUTE_ATTR); the parent run sums them over
# the finished trials as "total_<name>" (failed trials apart, as "failed_<name>").
COMPUTE_METRICS = (
    "steps_trained",
    "steps_planned",
    "samples_seen",
    "train_flos",
    WALL_TIME_METRIC,
    "cpu_time_s",
    "gpu_busy_s",
)
TOTAL_PREFIX = "total_"
FAILED_PREFIX = "failed_"
# parent run: 1 - steps trained / steps planned, over the finished trials, from pruning alone
COMPUTE_SAVED_METRIC = "compute_saved_fraction"
EARLY_STOPPING_SAVED_METRIC = "early_stopping_saved_fraction"  # the same, from early stopping

# ---------------------------------------------------------------- MLflow: artifacts
CHECKPOINT_ARTIFACT = "checkpoint"  # a kept trial's weights (or adapter), tokenizer, labels
CONFIG_ARTIFACT = "config.yaml"  # a trial's composed config (passwords masked)
TRACEBACK_ARTIFACT = "traceback.txt"  # a failed trial's traceback
REPORT_ARTIFACT = "report"  # the parent run's study report
MODEL_ARTIFACT = "model"  # an export registered from a trial run

# ---------------------------------------------------------------- MLflow: params
DATA_SIZE_PARAM = "data.{split}_size"  # parent run: rows per split
MODEL_PARAM = "model"
MODEL_PATH_PARAM = "model.name_or_path"
NOT_SAMPLED = "n/a"  # a param this trial did not sample (another method's, in a methods study)
