"""The run protocol of docs/protocol.md on tiny runs: the final evaluation on more episodes than
the periodic ones, the mean over the last quarter of training beside the last evaluation,
evaluation seconds beside training seconds, and `--resume` (bit-identical, and from a
checkpoint of a version that had none of these)."""

import json

import numpy as np
import pytest

from sdepolicy.app import RunSpec, ensure_default_dataset, get_preset, read_header, run
from sdepolicy.app import _checkpoint as ckpt
from sdepolicy.app._runner import DEFAULT_FINAL_EVAL_EPISODES, _run_settings

TINY = "test/pendulum-protocol-v0"
# Diffusion BC, the cheapest agent to compile: the protocol is the runner's, the same for all.
SMALL = {"hidden": 16, "batch_size": 16, "diffusion_steps": 3}


@pytest.fixture(scope="module")
def dataset(minari_store):
    ensure_default_dataset(TINY, num_episodes=4, num_ref_episodes=2)
    return minari_store


def _spec(out, **kw):
    base = dict(algo="bc", dataset=(TINY,), seeds=(0, 1), steps=80, eval_every=20, eval_episodes=1,
                final_eval_episodes=3, steps_per_call=20, out=str(out), overrides=SMALL,
                progress=False)  # fmt: skip
    return RunSpec(**(base | kw))


def test_final_evaluation_episodes_default_and_rule():
    preset = get_preset("pendulum-mixed")  # 10 episodes per periodic evaluation
    settings = lambda **kw: _run_settings(RunSpec(**kw), preset, None, None)
    assert settings()["final_eval_episodes"] == DEFAULT_FINAL_EVAL_EPISODES == 20
    assert settings(eval_episodes=30)["final_eval_episodes"] == 30  # never fewer
    assert settings(eval_episodes=30, final_eval_episodes=5)["final_eval_episodes"] == 5
    with pytest.raises(Exception, match="--final-eval-episodes"):
        settings(final_eval_episodes=0)


def test_summary_has_final_episodes_last_quarter_and_timing(dataset, tmp_path):
    s = run(_spec(tmp_path / "a"))
    evals = s["evaluations"]
    assert [h["step"] for h in evals] == [20, 40, 60, 80]
    assert [h["episodes"] for h in evals] == [1, 1, 1, 3]
    assert s["last_evaluation"]["episodes"] == 3 and s["run"]["final_eval_episodes"] == 3
    # The last quarter of 80 steps is steps 60..80: per seed the mean of those two
    # evaluations, then mean and std over the seeds, computed here from the evaluations.
    q = s["last_quarter"]
    assert q["from_step"] == 60 and q["steps"] == [60, 80]
    per_seed = (np.array(evals[2]["normalized"]) + np.array(evals[3]["normalized"])) / 2
    assert q["per_seed_normalized"] == pytest.approx(per_seed.tolist())
    assert q["normalized"]["mean"] == pytest.approx(per_seed.mean())
    assert q["normalized"]["std"] == pytest.approx(per_seed.std(ddof=1))
    returns = (np.array(evals[2]["returns"]) + np.array(evals[3]["returns"])) / 2
    assert q["return"]["mean"] == pytest.approx(returns.mean())
    # Evaluation seconds beside training seconds; 2 seeds x (3 x 1 + 3) episodes.
    t = s["timing"]
    assert t["eval_episodes"] == 2 * (3 * 1 + 3)
    assert t["train_s"] == pytest.approx(s["wall_time_s"]) and t["eval_s"] > 0
    assert t["eval_share"] == pytest.approx(t["eval_s"] / (t["train_s"] + t["eval_s"]))
    assert "note" not in t
    on_disk = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert on_disk["timing"] == t and on_disk["last_quarter"] == q


def test_resume_is_bit_identical_and_keeps_the_evaluation_time(dataset, tmp_path):
    full = run(_spec(tmp_path / "full"))

    class Killed(Exception):
        pass

    def kill(step):
        if step == 40:
            raise Killed

    with pytest.raises(Killed):
        run(_spec(tmp_path / "killed"), on_checkpoint=kill)
    header = read_header(tmp_path / "killed" / "checkpoint.eqx")
    assert header["step"] == 40 and header["extra"]["eval_elapsed"] > 0
    assert header["extra"]["run"]["final_eval_episodes"] == 3
    resumed = run(_spec(tmp_path / "killed", resume=True))
    payload = lambda p: p.read_bytes().split(b"\n", 1)[1]
    assert payload(tmp_path / "killed" / "checkpoint.eqx") == payload(
        tmp_path / "full" / "checkpoint.eqx"
    )
    assert resumed["evaluations"] == full["evaluations"]
    assert resumed["last_quarter"] == full["last_quarter"]
    # The resumed run's evaluation time includes the killed process's evaluations.
    assert resumed["timing"]["eval_s"] > header["extra"]["eval_elapsed"]
    with pytest.raises(Exception, match="--final-eval-episodes"):
        run(_spec(tmp_path / "killed", resume=True, final_eval_episodes=4))


def _as_older_version(path):
    """The checkpoint as an earlier version wrote it: no evaluation time, no final-episodes
    setting in its run settings, no episode count in its evaluations (its digest recomputed
    over the edited header)."""
    line, payload = path.read_bytes().split(b"\n", 1)
    header = json.loads(line)
    del header["extra"]["eval_elapsed"]
    del header["extra"]["run"]["final_eval_episodes"]
    for record in header["extra"]["history"]:
        del record["episodes"]
    if "sha256" in header:
        header["sha256"] = ckpt._digest(header, payload)
    path.write_bytes(json.dumps(header).encode() + b"\n" + payload)


def test_checkpoint_of_an_older_version_resumes(dataset, tmp_path):
    def kill(step):
        if step == 40:
            raise KeyboardInterrupt

    with pytest.raises(Exception, match="interrupted"):
        run(_spec(tmp_path / "old"), on_checkpoint=kill)
    _as_older_version(tmp_path / "old" / "checkpoint.eqx")
    s = run(_spec(tmp_path / "old", resume=True))
    assert s["status"] == "completed" and s["last_evaluation"]["episodes"] == 3
    assert s["timing"]["note"].startswith("evaluations before step 40")
    # Evaluations written by the older version carry no episode count: the periodic one.
    assert s["timing"]["eval_episodes"] == 2 * (3 * 1 + 3)


def test_a_shorter_budget_is_the_first_steps_of_a_longer_run(dataset, tmp_path):
    """What benchmarks/budgets.py relies on: a run of 40 steps trains exactly as the first 40
    steps of an 80-step run with the same seed (the same losses in every chunk of metrics.csv,
    the same policy at the periodic evaluations they share), for the actor-critic agents too."""
    small = SMALL | {"num_critics": 2, "eval_candidates": 2, "ema_start": 0}
    kw = dict(algo="erdpqe", seeds=(0,), final_eval_episodes=1, overrides=small)
    short = run(_spec(tmp_path / "short", steps=40, **kw))
    long = run(_spec(tmp_path / "long", steps=80, **kw))

    def rows(folder, upto):
        lines = (folder / "metrics.csv").read_text().splitlines()
        header, body = lines[0].split(","), [line.split(",") for line in lines[1:]]
        losses = [i for i, name in enumerate(header) if name.endswith(("_loss", "_grad_norm"))]
        return [[r[i] for i in losses] for r in body if int(r[0]) <= upto]

    assert len(rows(tmp_path / "short", 40)) == 2  # chunks ending at 20 and 40
    assert rows(tmp_path / "short", 40) == rows(tmp_path / "long", 40)
    assert short["evaluations"][0] == long["evaluations"][0]  # the periodic one at step 20
    # and the run goes on from there: the longer run's later chunks differ from its first ones
    assert rows(tmp_path / "long", 80)[2:] != rows(tmp_path / "long", 80)[:2]
