"""Conversations and their messages (ai.models): services write, selectors read, api serves
them over REST. Each assistant message is one gateway call, metered under its request id."""
