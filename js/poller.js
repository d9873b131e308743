// Poller: asks the kernel every few seconds, while shown, whether the project changed.
export default {
  render({ model, el }) {
    const timer = setInterval(() => {
      if (el.isConnected) model.send({ kind: "poll" });
    }, Math.max(0.5, model.get("seconds")) * 1000);
    return () => clearInterval(timer);
  },
};
