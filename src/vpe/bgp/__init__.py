"""BGP speaker: sans-IO wire codec (``wire``), pure FSM (``fsm``), asyncio glue."""
