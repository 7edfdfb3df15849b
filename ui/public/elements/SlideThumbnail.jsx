// A slide's thumbnail (never its label or macro image): a click picks a square region around
// the point, a drag picks a box; either sends "region x,y,w,h of slide N" (level-0 pixels),
// exactly what a user can type. Props (ui/slides.py): src, slide, width, height, box.
import { useRef, useState } from "react";

export default function SlideThumbnail() {
  const img = useRef(null);
  const [start, setStart] = useState(null);
  const [end, setEnd] = useState(null);
  const [hover, setHover] = useState(null);

  const at = (e) => {
    const r = img.current.getBoundingClientRect();
    return [
      Math.min(Math.max(e.clientX - r.left, 0), r.width),
      Math.min(Math.max(e.clientY - r.top, 0), r.height),
    ];
  };
  const scale = () => props.width / img.current.getBoundingClientRect().width;
  const clamp = (v, lo, hi) => Math.round(Math.min(Math.max(v, lo), hi));

  const pick = (a, b) => {
    const s = scale();
    let x, y, w, h;
    if (Math.abs(a[0] - b[0]) < 4 && Math.abs(a[1] - b[1]) < 4) {
      w = h = props.box; // a click: a square around the point
      x = a[0] * s - w / 2;
      y = a[1] * s - h / 2;
    } else {
      x = Math.min(a[0], b[0]) * s;
      y = Math.min(a[1], b[1]) * s;
      w = Math.abs(a[0] - b[0]) * s;
      h = Math.abs(a[1] - b[1]) * s;
    }
    w = clamp(w, 1, props.width);
    h = clamp(h, 1, props.height);
    x = clamp(x, 0, props.width - w);
    y = clamp(y, 0, props.height - h);
    sendUserMessage(`region ${x},${y},${w},${h} of slide ${props.slide}`);
  };

  const box = start && end && {
    left: Math.min(start[0], end[0]),
    top: Math.min(start[1], end[1]),
    width: Math.abs(start[0] - end[0]),
    height: Math.abs(start[1] - end[1]),
  };
  const where = hover && img.current
    ? `x ${Math.round(hover[0] * scale())}, y ${Math.round(hover[1] * scale())}`
    : `${props.width} x ${props.height} px`;

  return (
    <div className="flex flex-col gap-1">
      <div className="relative inline-block select-none" style={{ width: "fit-content" }}>
        <img
          ref={img}
          src={props.src}
          alt="slide thumbnail"
          draggable={false}
          style={{ maxWidth: "100%", maxHeight: 420, cursor: "crosshair", display: "block" }}
          onMouseDown={(e) => { const p = at(e); setStart(p); setEnd(p); }}
          onMouseMove={(e) => { const p = at(e); setHover(p); if (start) setEnd(p); }}
          onMouseLeave={() => setHover(null)}
          onMouseUp={(e) => { if (start) pick(start, at(e)); setStart(null); setEnd(null); }}
        />
        {box && box.width > 3 && (
          <div
            className="absolute border-2 border-primary pointer-events-none"
            style={{ left: box.left, top: box.top, width: box.width, height: box.height }}
          />
        )}
      </div>
      <div className="text-xs text-muted-foreground">
        Slide {props.slide}, level 0: {where}. Click for a {props.box} px square, or drag a box.
      </div>
    </div>
  );
}
