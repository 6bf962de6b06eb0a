"""Operations: answers to the four questions from the event store."""
