"""shared.state.calling_functions: a pipeline of FCALLs is run again once its library is loaded,
when Redis answers that the Function is gone; any other answer is returned as it came."""

from redis.exceptions import ResponseError

from shared.state import calling_functions


async def test_a_lost_library_is_loaded_and_the_calls_run_once_more():
    answers = [[ResponseError("ERR Function not found"), 1], [1, 1]]
    loads = []

    async def run() -> list:
        return answers.pop(0)

    async def load() -> None:
        loads.append(True)

    assert await calling_functions(run, load) == [1, 1]
    assert loads == [True] and answers == []


async def test_other_errors_come_back_as_they_are_without_a_reload():
    failed = ResponseError("ERR wrong number of arguments")

    async def run() -> list:
        return [failed, 1]

    async def load() -> None:
        raise AssertionError("no reload for another error")

    assert await calling_functions(run, load) == [failed, 1]
