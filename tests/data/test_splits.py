from tdpo.data.splits import held_out_count, split_groups


def test_held_out_count():
    assert held_out_count(100, 0.05) == 5
    assert held_out_count(10, 0.01) == 1  # a positive fraction holds out at least one row
    assert held_out_count(10, 3) == 3
    assert held_out_count(10, 50) == 9  # at least one row stays for training
    assert held_out_count(1, 0.5) == 0
    assert held_out_count(100, 0) == 0


def test_split_is_deterministic_grouped_and_ordered():
    groups = [g for g in range(50) for _ in range(1 + g % 3)]  # 1-3 records per source row
    train, test = split_groups(groups, 0.2, seed=3)
    assert sorted(train + test) == list(range(len(groups)))
    assert train == sorted(train) and test == sorted(test)
    test_groups = {groups[i] for i in test}
    assert len(test_groups) == 10
    assert not test_groups & {groups[i] for i in train}
    assert split_groups(groups, 0.2, seed=3) == (train, test)
    assert split_groups(groups, 0.2, seed=4) != (train, test)
