"""Teachers: the bot's advice and texts, and the openai backend against a real local server.

The openai tests run the real `openai` client against `ChatServer`, a chat-completions endpoint
on 127.0.0.1, and check what reaches the server as much as what comes back.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import openai
import pytest
from chat_server import (
    QUIET_TEXTS,
    ChatServer,
    Flaky,
    Reply,
    answer_json,
    completion,
    first_offered,
    naming_the_action,
    offered_actions,
)
from minigrid.core.constants import COLOR_NAMES
from minigrid.envs.babyai.core.verifier import OBJ_TYPES

from teachable.models.teachers import (
    TEXT_FIELDS,
    BotTeacher,
    OpenAITeacher,
    Played,
    TeacherMonitor,
    TeacherOutage,
    TeacherRequest,
    leaked_actions,
    make_teacher,
    named_actions,
    prompt_messages,
    trajectory_player,
)
from teachable.parameters import EnvParameters, Parameters, TeacherParameters, load_parameters
from teachable.records.env_state import EnvState
from teachable.vocabulary import ACTIONS
from teachable.world.text_world import TextWorld, env_id, expert_trajectory

MAX_RETRIES = 2

SHIPPED = sorted((Path(__file__).resolve().parents[1] / "parameters").glob("*.yaml"))

LEVELS = sorted(
    {
        *EnvParameters().levels,
        *(level for path in SHIPPED for level in load_parameters(path).env.levels),
    }
)

OBJECT = rf"(?:{'|'.join(COLOR_NAMES)}) (?:{'|'.join(OBJ_TYPES)})"

PLACE = re.compile(
    rf"({OBJECT})(?: is)? (right in front of you|\d+ steps? (?:left|right)"
    rf"(?: and \d+ steps? forward)?|\d+ steps? forward)"
)


def _trajectory_states(level: str, seed: int) -> list[EnvState]:
    """Every state the bot passes through on one task."""
    task = EnvState(env_id(level), seed)
    actions, _ = expert_trajectory(task, 64)
    return [EnvState(task.env_id, seed, tuple(actions[:k])) for k in range(len(actions))]


def _requests(level: str, seeds: range, limit: int) -> list[TeacherRequest]:
    """Requests with distinct prompts along bot trajectories, each with a student action."""
    requests, prompts = [], set()
    for seed in seeds:
        for k, state in enumerate(_trajectory_states(level, seed)):
            request = TeacherRequest.at(TextWorld.restore(state), ACTIONS[k % len(ACTIONS)])
            prompt = prompt_messages(request)[1]["content"]
            if prompt not in prompts:
                prompts.add(prompt)
                requests.append(request)
    assert len(requests) >= limit
    return requests[:limit]


def _user_prompt(body: dict) -> str:
    return body["messages"][1]["content"]


@pytest.fixture(scope="module")
def requests() -> list[TeacherRequest]:
    return _requests("GoToLocal", range(12), 40)


@pytest.fixture
def api_key(monkeypatch, tmp_path):
    """A key for the local server, and a working folder without any .env file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "local-test-key")


def _openai(server: ChatServer, cache_dir: Path, **fields) -> OpenAITeacher:
    params = TeacherParameters(
        backend="openai", base_url=server.base_url, max_retries=MAX_RETRIES, timeout_s=5, **fields
    )
    return OpenAITeacher(params, cache_dir)


# --- openai backend ----------------------------------------------------------------------------


def test_valid_answers_are_parsed_and_the_server_gets_the_valid_actions_as_enum(
    api_key, tmp_path, requests
):
    narrow = TeacherRequest(
        requests[0].state, requests[0].mission, "A narrower question.", ("go forward", "toggle")
    )
    asked = [*requests[:6], narrow]
    with ChatServer() as server:
        answers = _openai(server, tmp_path / "cache").advise(asked)

    assert len(server.hits) == len(asked)
    for request, answer, hit in zip(asked, answers, server.hits, strict=True):
        assert answer.valid and not answer.cached and answer.problem is None
        assert answer.suggested_action == request.valid_actions[0]
        assert (answer.diagnosis, answer.hint, answer.contrast) == tuple(QUIET_TEXTS.values())
        assert answer.names_action == []
        assert (answer.backend, answer.model) == ("openai", "gpt-4o-mini")
        body = hit.body
        schema = body["response_format"]["json_schema"]
        assert schema["strict"] is True
        assert schema["schema"]["properties"]["suggested_action"]["enum"] == list(
            request.valid_actions
        )
        assert set(schema["schema"]["required"]) == {
            "suggested_action",
            "diagnosis",
            "hint",
            "contrast",
        }
        assert (body["model"], body["temperature"], body["max_tokens"]) == ("gpt-4o-mini", 0.0, 256)
        assert body["messages"][0]["role"] == "system"
        assert request.mission in _user_prompt(body)
        assert request.observation in _user_prompt(body)
    assert answers[-1].suggested_action == "go forward"


def test_flaky_server_still_answers_every_request_and_flags_invalid_ones(
    api_key, tmp_path, requests
):
    with ChatServer(Flaky(seed=4, rate=0.3)) as server:
        teacher = _openai(server, tmp_path / "cache")
        answers = teacher.advise(requests)
        first_run = list(server.hits)
        _openai(server, tmp_path / "cache").advise(requests)
        asked_again = {_user_prompt(hit.body) for hit in server.hits[len(first_run) :]}

    outcomes = {hit.outcome for hit in first_run}
    assert {"429", "500", "malformed", "outside"} <= outcomes
    assert len(answers) == len(requests)
    hits_of: dict[str, list] = {}
    for hit in first_run:
        hits_of.setdefault(_user_prompt(hit.body), []).append(hit)
    for request, answer in zip(requests, answers, strict=True):
        hits = hits_of[prompt_messages(request)[1]["content"]]
        assert len(hits) <= (1 + MAX_RETRIES) * 2
        assert answer.suggested_action in request.valid_actions
        assert answer.valid == (hits[-1].outcome == "ok")
        if not answer.valid:
            assert answer.problem
            expert = TextWorld.restore(request.state).expert_action()
            assert answer.suggested_action == expert
            assert answer.hint == BotTeacher().answer(request).hint
        for k, hit in enumerate(hits):
            if len(hit.body["messages"]) == 4:
                asked = [h for h in hits[:k] if len(h.body["messages"]) == 2]
                bad, instruction = hit.body["messages"][2:]
                assert bad == {"role": "assistant", "content": asked[-1].content}
                assert "could not be used" in instruction["content"]
    invalid = [answer for answer in answers if not answer.valid]
    assert invalid, "the seed should make at least one answer unusable"
    usage = teacher.usage()
    assert usage["invalid"] == len(invalid)
    assert usage["answers"] == len(requests)
    assert 0 < usage["repairs"] < len(requests)
    gave_up = {
        prompt_messages(request)[1]["content"]
        for request, answer in zip(requests, answers, strict=True)
        if answer.problem and answer.problem.startswith("the request failed")
    }
    assert gave_up, "the seed should exhaust the client's retries at least once"
    fell_back = {
        prompt_messages(request)[1]["content"]
        for request, answer in zip(requests, answers, strict=True)
        if not answer.valid
    }
    assert gave_up < fell_back, "the seed should also give answers unusable after the repair"
    assert asked_again == fell_back, "a rerun asks again every answer that fell back, no other"


def test_repair_message_carries_the_bad_answer_and_what_was_wrong(api_key, tmp_path, requests):
    script = iter(
        [
            Reply(200, answer_json("fly away"), "outside"),
            Reply(200, answer_json("turn right")),
            Reply(200, '{"suggested_action": "turn left"}', "missing"),
            Reply(200, "not json at all", "malformed"),
        ]
    )
    with ChatServer(lambda body: next(script)) as server:
        first, second = _openai(server, tmp_path / "cache").advise(requests[:2])

    assert first.valid and first.suggested_action == "turn right"
    repair = server.hits[1].body["messages"]
    assert repair[2] == {"role": "assistant", "content": answer_json("fly away")}
    assert "'fly away' is not one of the valid actions" in repair[3]["content"]
    assert not second.valid
    assert second.suggested_action == TextWorld.restore(requests[1].state).expert_action()
    assert second.problem == "the answer is not valid JSON"
    tokens = [completion(hit.body, hit.content)["usage"] for hit in server.hits]
    assert second.prompt_tokens == tokens[2]["prompt_tokens"] + tokens[3]["prompt_tokens"]
    assert (
        second.completion_tokens == tokens[2]["completion_tokens"] + tokens[3]["completion_tokens"]
    )
    missing = server.hits[3].body["messages"][3]["content"]
    assert "diagnosis" in missing and "hint" in missing and "contrast" in missing
    assert len(server.hits) == 4


def test_second_run_is_served_from_the_cache_without_any_request(api_key, tmp_path, requests):
    with ChatServer() as server:
        first = _openai(server, tmp_path / "cache").advise(requests[:8])
        sent = len(server.hits)
        again = _openai(server, tmp_path / "cache")
        second = again.advise(requests[:8])
        assert len(server.hits) == sent == 8

    assert all(answer.cached for answer in second)
    drop = {"cached"}
    assert [a.model_dump(exclude=drop) for a in first] == [
        a.model_dump(exclude=drop) for a in second
    ]
    usage = again.usage()
    assert (usage["cache_hits"], usage["requests"], usage["prompt_tokens"]) == (8, 0, 0)
    files = sorted((tmp_path / "cache").glob("*.json"))
    assert len(files) == 8
    stored = json.loads(files[0].read_text())
    assert stored["request"]["messages"][0]["role"] == "system"


def test_a_setup_mistake_is_raised_not_papered_over(api_key, tmp_path, requests):
    with ChatServer(lambda body: Reply(401, outcome="401")) as server:
        teacher = _openai(server, tmp_path / "cache")
        with pytest.raises(openai.AuthenticationError):
            teacher.advise(requests[:1])
    assert len(server.hits) == 1
    assert not list((tmp_path / "cache").glob("*.json"))


def test_an_answer_that_names_its_action_is_flagged_and_repaired(api_key, tmp_path, requests):
    asked = requests[:6]
    with ChatServer(naming_the_action) as server:
        teacher = _openai(server, tmp_path / "cache")
        answers = teacher.advise(asked)

    assert "never name a valid action" in server.hits[0].body["messages"][0]["content"]
    for request, answer in zip(asked, answers, strict=True):
        action = request.valid_actions[0]
        assert answer.valid and answer.problem is None
        assert answer.suggested_action == action and answer.names_action == [action]
        assert (answer.diagnosis, answer.hint, answer.contrast) == (
            "You should act now.",
            "Act.",
            "'act' beats the student's action.",
        )
        assert not leaked_actions(answer, request.student_action)
    usage = teacher.usage()
    assert (usage["names_action"], usage["invalid"], usage["requests"]) == (6, 0, 6)


def test_an_excluded_answer_gives_way_to_the_bot_and_stays_cached_as_given(
    api_key, tmp_path, requests
):
    asked = requests[:6]
    with ChatServer(naming_the_action) as server:
        excluding = _openai(server, tmp_path / "cache", action_in_text="exclude")
        excluded = excluding.advise(asked)
        repaired = _openai(server, tmp_path / "cache").advise(asked)
        watched = _openai(server, tmp_path / "cache", action_in_text="exclude")
        monitor = TeacherMonitor(watched, "phase 1", len(asked), max_fraction=0.1)
        with pytest.raises(TeacherOutage, match="answers excluded for naming an action: 1;"):
            watched.advise(asked, monitor=monitor)
        assert len(server.hits) == len(asked)

    for request, answer in zip(asked, excluded, strict=True):
        action = request.valid_actions[0]
        bot = BotTeacher().answer(request)
        assert not answer.valid and answer.names_action == [action]
        assert answer.problem == f"the answer's texts name the action(s) '{action}'"
        assert answer.model_dump(include=set(TEXT_FIELDS) | {"suggested_action"}) == (
            bot.model_dump(include=set(TEXT_FIELDS) | {"suggested_action"})
        )
        assert (answer.backend, answer.model) == ("openai", "gpt-4o-mini")
        assert answer.prompt_tokens > 0
    assert excluding.usage()["invalid"] == len(asked)
    assert all(answer.valid and answer.cached and answer.hint == "Act." for answer in repaired)


@pytest.mark.parametrize("expert_too", [False, True])
def test_a_contrast_may_name_the_students_own_action_only(api_key, tmp_path, requests, expert_too):
    def naming_the_students(body: dict) -> Reply:
        student = re.search(r"Student's action: (.+)", _user_prompt(body))[1]
        other = next(action for action in offered_actions(body) if action != student)
        unlike = f", unlike {other.upper()}" if expert_too else ""
        contrast = f"'{student}' does not help here{unlike}."
        return Reply(200, answer_json(other, contrast=contrast))

    asked = requests[:6]
    with ChatServer(naming_the_students) as server:
        answers = _openai(server, tmp_path / "cache").advise(asked)

    for request, answer in zip(asked, answers, strict=True):
        assert answer.valid
        own = f"'{request.student_action}' does not help here"
        if expert_too:
            assert answer.names_action == [answer.suggested_action]
            assert answer.contrast == f"{own}, unlike Act."
        else:
            assert answer.names_action == [] and answer.contrast == f"{own}."


def test_usage_sums_tokens_and_cost(api_key, tmp_path, requests):
    prices = {"price_per_1k_input": 0.5, "price_per_1k_output": 2.0}
    with ChatServer() as server:
        teacher = _openai(server, tmp_path / "cache", **prices)
        answers = teacher.advise(requests[:5])

    reported = [
        completion(hit.body, first_offered(hit.body).content)["usage"] for hit in server.hits
    ]
    prompt_tokens = sum(item["prompt_tokens"] for item in reported)
    completion_tokens = sum(item["completion_tokens"] for item in reported)
    usage = teacher.usage()
    assert prompt_tokens > 0 and completion_tokens > 0
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (
        prompt_tokens,
        completion_tokens,
    )
    assert [a.prompt_tokens for a in answers] == [item["prompt_tokens"] for item in reported]
    assert usage["cost_usd"] == pytest.approx(prompt_tokens * 0.5e-3 + completion_tokens * 2e-3)
    assert (usage["requests"], usage["answers"], usage["invalid"]) == (5, 5, 0)


def test_default_prices_are_gpt_4o_mini_per_million_tokens():
    params = TeacherParameters()
    assert params.price_per_1k_input * 1000 == pytest.approx(0.15)
    assert params.price_per_1k_output * 1000 == pytest.approx(0.60)


def test_missing_key_with_the_openai_backend_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    params = Parameters(teacher={"backend": "openai"}, run={"output_root": tmp_path})
    for build in (make_teacher, trajectory_player):
        with pytest.raises(RuntimeError, match="OPENAI_API_KEY") as error:
            build(params)
        assert "teacher.backend" in str(error.value)


def test_key_is_read_from_a_dotenv_file(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    (tmp_path / ".env").write_text("OPENAI_API_KEY=key-from-dotenv\n")
    params = Parameters(teacher={"backend": "openai"}, run={"output_root": tmp_path, "name": "r"})
    teacher = make_teacher(params)
    assert isinstance(teacher, OpenAITeacher)
    assert teacher.client.api_key == "key-from-dotenv"
    assert teacher.cache_dir == tmp_path / "r" / "teacher_cache"


def test_openai_player_plays_the_teachers_actions_through_the_cache(api_key, tmp_path):
    task = EnvState(env_id("GoToLocal"), 5)
    bot_actions, bot_success = expert_trajectory(task, 64)
    expert_at = {}
    for k, action in enumerate(bot_actions):
        world = TextWorld.restore(EnvState(task.env_id, task.seed, tuple(bot_actions[:k])))
        expert_at[prompt_messages(TeacherRequest.at(world))[1]["content"]] = action
    params = Parameters(run={"output_root": tmp_path}, teacher={"backend": "openai"})

    def bot_like(body: dict) -> Reply:
        return Reply(200, answer_json(expert_at[_user_prompt(body)]))

    with ChatServer(bot_like) as server:
        params.teacher.base_url = server.base_url
        player = trajectory_player(params)
        played = player.play(task, 64)
        assert len(server.hits) == len(bot_actions)
        assert trajectory_player(params).play(task, 64) == played
        assert len(server.hits) == len(bot_actions)

    assert player.name == "gpt-4o-mini"
    assert (list(played.actions), played.success) == (bot_actions, bot_success)
    assert played.success and played.fallback_steps == 0
    assert len(list((params.run_dir / "teacher_cache").glob("*.json"))) == len(bot_actions)


def test_bot_backend_plays_with_the_bot_and_needs_no_key(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    params = Parameters(run={"output_root": tmp_path})
    player = trajectory_player(params)
    assert player.name == "bot" and player.monitor("phase 0 experiment B", 10) is None
    task = EnvState(env_id("GoToLocal"), 5)
    actions, success = expert_trajectory(task, 64)
    assert player.play(task, 64) == Played(tuple(actions), success, 0)
    assert isinstance(make_teacher(params), BotTeacher)


# --- bot backend -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bot_requests() -> list[TeacherRequest]:
    requests = []
    for level in ("GoToLocal", "PickupLoc", "OpenDoor", "PutNextLocal", "UnlockLocal"):
        for k, state in enumerate(_trajectory_states(level, 1)):
            world = TextWorld.restore(state)
            requests.append(TeacherRequest.at(world, ACTIONS[(k + 2) % len(ACTIONS)]))
    return requests


def _random_states(level: str, n: int, rng: random.Random) -> list[EnvState]:
    """`n` states of `level` on distinct tasks: half at a random point of the bot's trajectory,
    half at reset, each then a few random actions on (fewer where the episode ends)."""
    states = []
    for task_seed in rng.sample(range(100_000), n):
        task = EnvState(env_id(level), task_seed)
        actions = expert_trajectory(task, 64)[0] if rng.random() < 0.5 else []
        world = TextWorld.restore(
            EnvState(task.env_id, task_seed, tuple(actions[: rng.randrange(len(actions) + 1)]))
        )
        for _ in range(rng.randint(0, 4)):
            if world.done:
                break
            world.step(rng.choice(ACTIONS))
        states.append(world.state)
    return states


def _unseen(text: str, world: TextWorld) -> list[str]:
    """The objects `text` names that neither the observation nor the mission names, and the
    places it gives that the observation does not."""
    shown = set(re.findall(OBJECT, world.observation)) | set(re.findall(OBJECT, world.mission))
    unseen = [name for name in re.findall(OBJECT, text) if name not in shown]
    for name, place in PLACE.findall(text):
        offset = "1 step forward" if place == "right in front of you" else place
        if f"{name} {offset}" not in world.observation:
            unseen.append(f"{name} {place}")
    return unseen


@pytest.mark.parametrize("level", LEVELS)
def test_bot_texts_name_no_action_and_only_what_the_observation_shows(level):
    rng = random.Random(level)
    diagnoses = Counter()
    for state in _random_states(level, 200, rng):
        world = TextWorld.restore(state)
        student = rng.choice(ACTIONS)
        answer = BotTeacher().answer(TeacherRequest.at(world, student))
        assert not leaked_actions(answer, student), (world.observation, answer)
        assert not named_actions(f"{answer.diagnosis} {answer.hint}")
        if student == answer.suggested_action or student not in answer.contrast:
            assert not named_actions(answer.contrast), answer.contrast
        for text in (answer.diagnosis, answer.hint, answer.contrast):
            assert not _unseen(text, world), (world.mission, world.observation, text)
            assert 1 <= len(re.findall(r"[.!?](?: |$)", text)) <= 2, text
        diagnoses[answer.diagnosis.split()[0]] += 1
    assert diagnoses["The"] >= 40 and diagnoses["No"] >= 10, diagnoses


def test_bot_suggests_the_bots_action_and_names_only_the_students(bot_requests):
    teacher = BotTeacher()
    answers = teacher.advise(bot_requests)
    for request, answer in zip(bot_requests, answers, strict=True):
        assert answer.valid and answer.backend == "bot"
        assert answer.suggested_action == TextWorld.restore(request.state).expert_action()
        if request.student_action == answer.suggested_action:
            assert answer.contrast == "Your action is the right one here."
        else:
            assert answer.contrast.startswith(f"'{request.student_action}' ")
        assert request.mission not in answer.diagnosis
    assert teacher.usage()["answers"] == len(bot_requests)
    assert teacher.usage()["cost_usd"] == 0


def test_bot_texts_say_where_the_observation_sees_the_target():
    seen, unseen, away = 0, 0, 0
    for seed in range(6):
        for state in _trajectory_states("GoToLocal", seed):
            world = TextWorld.restore(state)
            answer = BotTeacher().answer(TeacherRequest.at(world, "toggle"))
            target = re.fullmatch(r"go to (?:the|a) (\w+ \w+)", world.mission).group(1)
            assert "'toggle' changes nothing here" in answer.contrast
            places = re.findall(rf"You see an? {target} ([^.]+)\.", world.observation)
            if not places:
                assert answer.diagnosis.startswith(f"No {target} the mission names is in view.")
                assert answer.hint == "Explore the room until it comes into view."
                unseen += 1
            elif len(places) == 1:
                assert answer.diagnosis.startswith(f"The {target} is {places[0]}.")
                assert answer.hint == f"You reach the {target} once it is right in front of you."
                seen += 1
            if re.fullmatch(r"[3-9] steps forward", places[0] if places else ""):
                turn = BotTeacher().answer(TeacherRequest.at(world, "turn left"))
                assert turn.contrast == f"'turn left' takes you farther from the {target}."
                away += 1
    assert seen >= 10 and unseen >= 1 and away >= 2


def test_bot_says_a_locked_door_in_view_needs_its_key():
    checked = {"key in view": 0, "key not in view": 0, "key carried": 0}
    for seed in range(8):
        for state in _trajectory_states("UnlockLocal", seed):
            world = TextWorld.restore(state)
            door = re.search(r"You see a locked (\w+) door ([^.]+)\.", world.observation)
            answer = BotTeacher().answer(TeacherRequest.at(world, "toggle"))
            if door is None:
                continue
            color, place = door.groups()
            locked = f"The {color} door {place} is locked"
            key = re.search(rf"You see a {color} key ([^.]+)\.", world.observation)
            if f"You carry a {color} key." in world.observation:
                assert answer.diagnosis.startswith(f"{locked}, and the key you carry opens it.")
                checked["key carried"] += 1
            elif key is None:
                assert answer.diagnosis.startswith(f"{locked}; no key for it is in view.")
                assert answer.hint.startswith(
                    "Explore the room until a key for it comes into view."
                )
                checked["key not in view"] += 1
            else:
                assert answer.diagnosis.startswith(f"{locked}; the {color} key {key[1]} opens it.")
                assert f"{color} key" in answer.hint
                checked["key in view"] += 1
    assert min(checked.values()) >= 1, checked


def test_named_actions_finds_action_phrases_in_any_case():
    text = "Turn LEFT, then go  forward and pick-up the key; toggle it. You drop nothing."
    assert named_actions(text) == ["turn left", "go forward", "pick up", "drop", "toggle"]
    assert named_actions("It turns you left, drops the key, toggled; step forward.") == []


def test_bot_answers_are_deterministic(bot_requests):
    first = [a.model_dump() for a in BotTeacher().advise(bot_requests[::3])]
    second = [a.model_dump() for a in BotTeacher().advise(bot_requests[::3])]
    assert first == second


def test_bot_without_an_action_falls_back_and_flags_it():
    task = EnvState(env_id("GoToLocal"), 2)
    actions, success = expert_trajectory(task, 64)
    assert success
    finished = TextWorld.restore(EnvState(task.env_id, task.seed, tuple(actions)))
    teacher = BotTeacher()
    (answer,) = teacher.advise([TeacherRequest.at(finished, "go forward")])
    assert not answer.valid and answer.problem
    assert answer.suggested_action in ACTIONS
    assert answer.diagnosis == "The episode is over."
    assert answer.contrast == "The episode is over, so no action changes anything now."
    assert teacher.usage()["invalid"] == 1
