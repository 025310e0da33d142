"""tdpo.experiments.imdb.experiment: the experiment's settings are checked field by field, errors name the field."""

from __future__ import annotations

import json

import pytest

from tdpo.commands import imdb as imdb_command
from tdpo.config import ConfigError
from tdpo.experiments.imdb.experiment import ImdbConfig, make_config, parse_method
from tdpo.experiments.imdb.presets import demo_config, frontier_config


@pytest.mark.parametrize("changes, message", [
    ({"train_steps": 0}, "train_steps: must be >= 1, got 0"),
    ({"test_fraction": 1.0}, "test_fraction: must be < 1, got 1.0"),
    ({"sft_max_length": 16}, "sft_max_length: must be > 16, got 16"),
    ({"samples_per_prefix": 1}, "samples_per_prefix: must be >= 2, got 1"),
    ({"keep_checkpoints": "yes"}, "keep_checkpoints: 'yes' is not a boolean"),
    ({"batch_size": 6}, r"batch_size \(6\) must be a multiple of micro_batch_size \(4\)"),
    ({"sft_batch_size": 12}, r"sft_batch_size \(12\) must be a multiple of 8"),
    ({"sft_examples": 4}, r"sft_examples \(4\) must be at least sft_batch_size \(16\)"),
    ({"methods": []}, "methods: give at least one method"),
    ({"methods": ["dpo:beta=-1"]}, "methods: method 'dpo:beta=-1': beta must be a finite number > 0"),
    ({"methods": ["dpo:seed=-1"]}, "methods: method 'dpo:seed=-1': seed must be >= 0"),
    ({"methods": ["dpo:seed=0.5"]}, "methods: .*seed must be a whole number"),
    ({"methods": ["dpo", "dpo:beta=0.1"]}, r"methods: a run is listed twice \(dpo_beta0.1\)"),
    ({"train_steps": 4, "eval_points": 5}, r"eval_points \(5\) must be at most train_steps \(4\)"),
    ({"pair_eval_methods": ["ppo"]}, "pair_eval_methods: method 'ppo': unknown loss 'ppo'"),
    ({"best_of_n": [0, 2]}, r"best_of_n: every N must be at least 1; got \[0\]"),
])
def test_a_bad_setting_is_one_line_naming_the_field(changes, message):
    with pytest.raises(ConfigError, match=f"^{message}") as err:
        make_config(ImdbConfig(), **changes)
    assert "\n" not in str(err.value)


def test_presets_run_the_papers_settings_as_curves():
    demo, frontier = demo_config(), frontier_config()
    assert demo.out_dir == "runs/demo" and demo_config("elsewhere", seed=3).seed == 3
    assert [m.name for m in demo.method_list()] == ["dpo_beta0.1", "tdpo2_beta0.1_alpha0.5"]
    assert len(demo.eval_steps()) >= 2 and demo.eval_samples >= 4
    # the pre-registered primary contrast: TDPO2 at the paper's best alpha minus DPO, three seeds each
    assert [m.name for m in frontier.method_list()] == [
        "dpo_beta0.1", "dpo_beta0.1_seed1", "dpo_beta0.1_seed2",
        "tdpo2_beta0.1_alpha0.7", "tdpo2_beta0.1_alpha0.7_seed1", "tdpo2_beta0.1_alpha0.7_seed2",
    ]
    assert frontier.primary_contrast == ["tdpo2:beta=0.1,alpha=0.7", "dpo:beta=0.1"]
    assert frontier.primary_kl_window == [0.2, 0.6]
    # preference data at scale: at least 2,048 training prefixes (up to 6 pairs each: >= 12,000 pairs)
    assert frontier.train_prefixes >= 2048 and frontier.samples_per_prefix == 4
    # best-of-N up to N = 16 from 16 SFT samples per prefix
    assert frontier.best_of_n_samples == 16 and max(frontier.best_of_n) == 16
    # curve points: >= 4 samples per held-out prefix, dense where the primary window lies
    assert frontier.eval_samples >= 4 and frontier.eval_prefixes >= 128
    assert frontier.eval_steps() == [10, 20, 30, 40, 80, 160, 320] and frontier.eval_steps()[-1] == frontier.train_steps
    # Figure 3 on >= 128 held-out pairs from >= 128 distinct prefixes, at the start and 4 more times
    assert frontier.eval_pair_prefixes >= 128 and frontier.eval_pairs_per_prefix == 1
    assert frontier.train_steps // frontier.pair_eval_every_steps() >= 4
    assert {m.name for m in frontier.pair_eval_method_list()} == {"dpo_beta0.1", "tdpo2_beta0.1_alpha0.7"}


def test_the_paper_preset_adds_the_whole_grid_and_the_baselines():
    from tdpo.experiments.imdb.presets import paper_config

    cfg = paper_config()
    names = [m.name for m in cfg.method_list()]
    assert names[:6] == [m.name for m in frontier_config().method_list()]
    assert {"tdpo1_beta0.1", "tdpo2_beta0.1_alpha0.1", "tdpo2_beta0.1_alpha0.3", "tdpo2_beta0.1_alpha0.5",
            "preferred_ft", "unlikelihood_alpha0.1", "unlikelihood_alpha1", "rloo_beta0.05"} <= set(names)
    assert cfg.primary_contrast == frontier_config().primary_contrast


def test_curve_points_may_be_listed():
    cfg = make_config(ImdbConfig(), train_steps=50, eval_at_steps=[5, 10, 50])
    assert cfg.eval_steps() == [5, 10, 50] and cfg.pair_eval_every_steps() == 17
    for bad in ([5, 5, 50], [0, 50], [5, 10], []):
        with pytest.raises(ValueError, match="eval_at_steps"):
            make_config(ImdbConfig(), train_steps=50, eval_at_steps=bad)
    assert "eval_at_steps" not in cfg.result_settings()


def test_eval_steps_cover_every_eighth_of_training():
    cfg = make_config(ImdbConfig(), train_steps=100, eval_points=8)
    assert cfg.eval_steps() == [12, 25, 38, 50, 62, 75, 88, 100]
    assert all(b - a <= 100 / 8 + 1 for a, b in zip([0, *cfg.eval_steps()], cfg.eval_steps()))
    assert cfg.pair_eval_every_steps() == 13
    assert make_config(ImdbConfig(), train_steps=100, eval_every_steps=7).pair_eval_every_steps() == 7
    assert make_config(ImdbConfig(), train_steps=8, eval_points=8).eval_steps() == list(range(1, 9))


def test_a_second_seed_is_its_own_run_of_the_same_setting():
    first, second = parse_method("tdpo2:beta=0.1,alpha=0.5"), parse_method("tdpo2:alpha=0.5,seed=1")
    assert (second.name, second.label) == ("tdpo2_beta0.1_alpha0.5_seed1", "TDPO2 (beta=0.1, alpha=0.5, seed 1)")
    assert second.setting == first.setting == first and second.setting.name == first.name
    assert parse_method("dpo:alpha=0.3").setting == parse_method("dpo")  # alpha is not DPO's


def test_the_dpo_papers_baselines_are_methods_named_by_what_they_read():
    ft, ul = parse_method("preferred_ft"), parse_method("unlikelihood:alpha=0.1")
    assert (ft.name, ft.label, ft.train_loss) == ("preferred_ft", "Preferred-FT", "sft")
    assert (ul.name, ul.label, ul.train_loss) == ("unlikelihood_alpha0.1", "Unlikelihood (alpha=0.1)", "unlikelihood")
    seeded = parse_method("preferred_ft:seed=2")
    assert (seeded.name, seeded.label, seeded.setting) == ("preferred_ft_seed2", "Preferred-FT (seed 2)", ft)
    # beta is read by neither: ignored, and the same setting
    assert parse_method("unlikelihood:alpha=0.1,beta=0.5").setting == ul.setting == ul
    assert parse_method("preferred_ft:beta=0.3,alpha=1").name == "preferred_ft"
    assert not ft.uses_alpha and not ft.uses_beta and ul.uses_alpha and not ul.uses_beta
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
        parse_method("unlikelihood:alpha=-1")
    with pytest.raises(ValueError, match="choose from .*unlikelihood, .*preferred_ft"):
        parse_method("preferred")
    with pytest.raises(ValueError, match="listed twice"):
        make_config(ImdbConfig(), methods=["unlikelihood:alpha=0.1", "unlikelihood:alpha=0.1,beta=0.2"])
    make_config(ImdbConfig(), methods=["dpo", "preferred_ft", "unlikelihood:alpha=0.05", "unlikelihood:alpha=1"])


def test_method_labels_name_what_they_read():
    assert parse_method("tdpo1:beta=0.2,seed=1").label == "TDPO1 (beta=0.2, seed 1)"


def test_saved_results_depend_on_the_settings_that_make_them():
    cfg = ImdbConfig()
    assert "lr" in cfg.result_settings() and "methods" not in cfg.result_settings()
    assert "eval_points" not in cfg.result_settings() and "eval_batch_size" not in cfg.result_settings()
    # how often runs save checkpoints changes no result: saved points stay valid
    assert make_config(cfg, checkpoint_every_steps=0).result_settings() == cfg.result_settings()
    changed = make_config(cfg, lr=3e-5)
    assert changed.sft_point_settings() == cfg.sft_point_settings() and changed.pair_settings() == cfg.pair_settings()
    assert make_config(cfg, eval_prefixes=7).pair_settings() == cfg.pair_settings()
    assert make_config(cfg, eval_prefixes=7).sft_point_settings() != cfg.sft_point_settings()
    assert make_config(cfg, sft_lr=1e-6).sft_settings() != cfg.sft_settings()


PRIMARY = {"methods": ["dpo:beta=0.1", "dpo:beta=0.1,seed=1", "tdpo2:beta=0.1,alpha=0.7"],
           "primary_contrast": ["tdpo2:beta=0.1,alpha=0.7", "dpo:beta=0.1"], "primary_kl_window": [1.0, 3.0]}


@pytest.mark.parametrize("changes, message", [
    ({"primary_kl_window": None}, "primary_contrast and primary_kl_window: give both"),
    ({"primary_contrast": None}, "primary_contrast and primary_kl_window: give both"),
    ({"primary_contrast": ["dpo:beta=0.1"]}, "give two settings, arm a then arm b"),
    ({"primary_contrast": ["tdpo2:beta=0.1,alpha=0.7", "dpo:beta=0.1,seed=1"]}, "names a seed"),
    ({"primary_contrast": ["dpo", "dpo:beta=0.1"]}, "both arms are the same setting"),
    ({"primary_contrast": ["tdpo2:beta=0.1,alpha=0.5", "dpo:beta=0.1"]}, "'tdpo2:beta=0.1,alpha=0.5' is not trained"),
    ({"primary_kl_window": [3.0, 1.0]}, r"primary_kl_window: give two KLs 0 <= lo < hi in nats; got \[3.0, 1.0\]"),
    ({"primary_kl_window": [1.0, 2.0, 3.0]}, "give two KLs"),
    ({"eval_pairs_per_prefix": 0}, "eval_pairs_per_prefix: must be >= 1, got 0"),
])
def test_the_primary_contrast_is_two_trained_settings_and_a_window(changes, message):
    with pytest.raises(ConfigError, match=message):
        make_config(ImdbConfig(), **{**PRIMARY, **changes})


def test_the_primary_arms_are_every_seed_of_their_settings():
    from tdpo.experiments.imdb.primary import primary_arms

    cfg = make_config(ImdbConfig(), **PRIMARY)
    a, b = primary_arms(cfg)
    assert [m.name for m in a] == ["tdpo2_beta0.1_alpha0.7"] and [m.name for m in b] == ["dpo_beta0.1",
                                                                                         "dpo_beta0.1_seed1"]
    assert primary_arms(ImdbConfig()) == ([], [])


def test_the_frontier_preset_needs_three_seeds_per_arm():
    with pytest.raises(ValueError, match=r"'tdpo2:beta=0.1,alpha=0.5' has 2 run\(s\) in methods; it needs at "
                       r"least 3 training seeds \(add e.g. 'tdpo2:beta=0.1,alpha=0.5,seed=2'\)"):
        frontier_config(methods=["dpo:beta=0.1", "dpo:beta=0.1,seed=1", "dpo:beta=0.1,seed=2", "tdpo2:beta=0.1,alpha=0.5",
                                 "tdpo2:beta=0.1,alpha=0.5,seed=1"],
                        primary_contrast=["tdpo2:beta=0.1,alpha=0.5", "dpo:beta=0.1"], primary_kl_window=[0.1, 0.3])
    methods = [f"{s}{',' if ':' in s else ':'}seed={n}" if n else s
               for s in ("dpo:beta=0.1", "tdpo2:beta=0.1,alpha=0.7") for n in range(3)]
    cfg = frontier_config(methods=methods, primary_contrast=["tdpo2:beta=0.1,alpha=0.7", "dpo:beta=0.1"],
                          primary_kl_window=[1.0, 3.0])
    assert cfg.primary_kl_window == [1.0, 3.0]


def test_the_analysis_settings_do_not_change_which_results_are_reused():
    base = make_config(ImdbConfig(), methods=PRIMARY["methods"])
    analysed = make_config(base, primary_contrast=PRIMARY["primary_contrast"], primary_kl_window=[1.0, 3.0],
                           eval_pairs_per_prefix=1)
    assert analysed.result_settings() == base.result_settings()
    assert analysed.sft_point_settings() == base.sft_point_settings()
    # the held-out pairs are made again (Figure 3's pair set), the training pairs with them, from the same seeds
    assert analysed.pair_settings() != base.pair_settings()


def test_the_command_line_takes_the_primary_contrast():
    from tdpo.commands.imdb import build_parser, config_from_args

    ns = build_parser().parse_args(["run", "--methods", *PRIMARY["methods"], "--primary-contrast",
                                    *PRIMARY["primary_contrast"], "--primary-kl-window", "1", "3",
                                    "--eval-pairs-per-prefix", "1"])
    cfg = config_from_args(ns, "default")
    assert cfg.primary_kl_window == [1.0, 3.0] and cfg.primary_contrast == PRIMARY["primary_contrast"]
    assert cfg.eval_pairs_per_prefix == 1


def test_saved_settings_load_back_and_unknown_keys_name_the_file(tmp_path):
    cfg = demo_config(str(tmp_path / "exp"))
    path = cfg.save(tmp_path / "settings.json")
    assert ImdbConfig.load(path) == cfg
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "train_stepz": 3}))
    with pytest.raises(ConfigError, match=r"settings\.json: unknown setting\(s\) \['train_stepz'\]"):
        ImdbConfig.load(path)
    path.write_text(json.dumps({**data, "batch_size": 6}))
    with pytest.raises(ConfigError, match=r"settings\.json: batch_size \(6\) must be a multiple of micro_batch_size"):
        ImdbConfig.load(path)


def test_the_command_reports_a_bad_option_in_one_line(capsys):
    assert imdb_command.main(["run", "--train-steps", "0", "--out", "unused"]) == 2
    assert capsys.readouterr().err.strip() == "tdpo imdb: train_steps: must be >= 1, got 0"


def test_the_estimate_step_prints_the_time_and_runs_nothing(capsys, tmp_path):
    out = tmp_path / "never"
    assert imdb_command.main(["estimate", "--preset", "frontier", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("estimated time (from the sizes, uncalibrated): ") and "6 run(s) x" in printed
    assert float(printed.split(": ")[1].split(" min")[0]) < 150  # the frontier's budget
    assert not out.exists()


def test_runs_save_checkpoints_at_the_curve_points_spacing_unless_told():
    cfg = make_config(ImdbConfig(), train_steps=100, eval_points=8)
    assert cfg.run_checkpoint_every_steps() == 13  # ceil(100 / 8)
    assert make_config(cfg, checkpoint_every_steps=5).run_checkpoint_every_steps() == 5
    assert make_config(cfg, checkpoint_every_steps=0).run_checkpoint_every_steps() is None
    with pytest.raises(ValueError, match="checkpoint_every_steps"):
        make_config(cfg, checkpoint_every_steps=-1)
