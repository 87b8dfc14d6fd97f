from agent.types import DialogueState, Recommendation, Reply
from eval.protocols import Case
from eval.simulator import attribute_messages, simulate, summarize


class ScriptedAgent:
    """Shows items from a script per turn, through the same turn() interface as the agent."""

    def __init__(self, catalog, script):
        self.catalog, self.script, self.heard = catalog, list(script), []

    def turn(self, message, state=None):
        self.heard.append(message)
        ids = self.script.pop(0)
        recs = tuple(Recommendation(self.catalog.get(i), 1.0, "x", "template") for i in ids)
        return Reply("", recs, state or DialogueState())


def test_attributes_reveal_the_target_step_by_step(catalog):
    case = Case(user=1, history=(1, 2), target=3)  # Terminator 2
    msgs = attribute_messages(case, catalog)
    assert msgs == ["I'm in the mood for an action movie.", "Something from the 1990s.",
                    "I really liked Alien.", "Maybe something directed by James Cameron.",
                    "Ideally with Arnold Schwarzenegger in it."]


def test_simulated_user_reacts_and_stops_at_success(catalog):
    case = Case(user=1, history=(1, 2), target=3)
    agent = ScriptedAgent(catalog, [[5, 4], [6, 3]])
    d = simulate(agent, case, catalog)
    assert d.success_turn == 2
    assert agent.heard[1] == "Not Toy Story. Something from the 1990s."


def test_summary_is_cumulative_by_turn(catalog):
    from eval.simulator import Dialogue

    ds = [Dialogue(1, 3, (), 1), Dialogue(2, 3, (), 3), Dialogue(3, 3, (), None),
          Dialogue(4, 3, (), None)]
    s = summarize(ds)
    assert s["success@10_by_turn"] == [0.25, 0.25, 0.5, 0.5, 0.5]
    assert s["success@10"] == 0.5 and s["mean_turns_to_success"] == 2.0
