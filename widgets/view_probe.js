// The snapshot's view probe: a widget that takes no room and tells the kernel when a front end draws
// the widget it sits in, and when it stops. While a view is on screen the kernel leaves the output's
// static snapshot alone (JupyterLab answers an output update by building the live view anew).
export default {
  render({ model }) {
    const id = Math.random().toString(36).slice(2);
    model.send({ view: "shown", id });
    return () => model.send({ view: "gone", id });
  },
};
