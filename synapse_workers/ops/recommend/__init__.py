"""`recommend`: measure the stack's load in Prometheus (`measure`), decide the change (`proposal`), and
write it as the document `scale --from-recommendation` reads back (`document`)."""
