"""A line that says where a wait is: on a terminal it updates in place, as
the CLI's does; elsewhere (a notebook, a log) each new state is a line."""

_CLEAR = "\r\033[K"


class Progress:
    def __init__(self, out):
        self.out = out
        try:
            self.tty = out.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self.last = ""

    def line(self, text, elapsed):
        if self.tty:
            self.out.write("%s%s, %d s" % (_CLEAR, text, int(elapsed)))
            self.out.flush()
        elif text != self.last:
            self.out.write(text + "\n")
            self.out.flush()
        self.last = text

    def job(self, j, elapsed):
        """Where job j is: waiting for a node (and why), or running where;
        an array, how many of its tasks are in each state."""
        if j.is_array:
            text = "array %d: %s" % (j.id, j.array.describe())
            if j.waiting and not j.array.counts.get("running"):
                text += ": " + j.waiting
            self.line(text, elapsed)
            return
        text = "job %s %s" % (j.ref, j.state)
        if j.state == "queued":
            text = "waiting for a node in pool %s: job %s queued" % (j.pool, j.ref)
            if j.held:
                text = "job %s queued, over a limit: %s" % (j.ref, j.waiting)
            elif j.waiting:
                text = "waiting for a node in pool %s: %s" % (j.pool, j.waiting)
        elif j.node:
            text += " on node " + j.node
        self.line(text, elapsed)

    def done(self):
        if self.tty and self.last:
            self.out.write(_CLEAR)
            self.out.flush()
        self.last = ""
